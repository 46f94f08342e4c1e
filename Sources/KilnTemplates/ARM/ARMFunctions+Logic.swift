import Foundation

// Comparison, logical and numeric functions. `if`, `and` and `or` are lazy and live in the evaluator.
extension ARMFunctions {
    static let comparisons: [String: Function] = [
        "coalesce": { a in a.values.first { !$0.isNull } ?? .null },
        "equals": { a in
            try a.arity(2...2)
            return .bool(a[0].armEquals(a[1]))
        },
        "greater": { a in .bool(try compare(a) > 0) },
        "greaterorequals": { a in .bool(try compare(a) >= 0) },
        "less": { a in .bool(try compare(a) < 0) },
        "lessorequals": { a in .bool(try compare(a) <= 0) },
        "not": { a in
            try a.arity(1...1)
            return .bool(!(try a.bool(0)))
        },
        "true": { a in
            try a.arity(0...0)
            return .bool(true)
        },
        "false": { a in
            try a.arity(0...0)
            return .bool(false)
        },
        "bool": { a in
            try a.arity(1...1)
            switch a[0].value {
            case .bool: return a[0]
            case .number(let n) where n.int != nil: return .bool(n.int! != 0)
            case .string(let s) where ["true", "false"].contains(s.lowercased()): return .bool(s.lowercased() == "true")
            default: throw a.fail("cannot convert \(a[0].kindName) '\(a[0].armString.prefix(40))' to a boolean")
            }
        }
    ]

    static let numbers: [String: Function] = [
        "add": { a in try arithmetic(a) { $0.addingReportingOverflow($1) } },
        "sub": { a in try arithmetic(a) { $0.subtractingReportingOverflow($1) } },
        "mul": { a in try arithmetic(a) { $0.multipliedReportingOverflow(by: $1) } },
        "div": { a in
            try a.arity(2...2)
            guard try a.int(1) != 0 else { throw a.fail("division by zero") }
            return try arithmetic(a) { $0.dividedReportingOverflow(by: $1) }
        },
        "mod": { a in
            try a.arity(2...2)
            guard try a.int(1) != 0 else { throw a.fail("division by zero") }
            return try arithmetic(a) { $0.remainderReportingOverflow(dividingBy: $1) }
        },
        "int": { a in
            try a.arity(1...1)
            switch a[0].value {
            case .number(let n) where n.int != nil: return .int(n.int!)
            case .number(let n) where n.double.flatMap({ Int(exactly: $0.rounded(.towardZero)) }) != nil:
                return .int(Int(exactly: n.double!.rounded(.towardZero))!)
            case .string(let s) where Int(s.trimmingCharacters(in: .whitespaces)) != nil: return .int(Int(s.trimmingCharacters(in: .whitespaces))!)
            default: throw a.fail("cannot convert \(a[0].kindName) '\(a[0].armString.prefix(40))' to an integer")
            }
        },
        "float": { a in
            try a.arity(1...1)
            switch a[0].value {
            case .number: return a[0]
            case .string(let s) where Double(s)?.isFinite == true && s.allSatisfy({ $0.isNumber || "+-.eE".contains($0) }):
                return SourceNode(.number(NumberLiteral(s)))
            default: throw a.fail("cannot convert \(a[0].kindName) to a number")
            }
        }
    ]

    /// 64-bit checked arithmetic: an overflow is an error, never a wrapped value.
    private static func arithmetic(_ a: Arguments, _ op: (Int, Int) -> (partialValue: Int, overflow: Bool)) throws -> SourceNode {
        try a.arity(2...2)
        let r = op(try a.int(0), try a.int(1))
        guard !r.overflow else { throw a.fail("the result overflows a 64-bit integer") }
        return .int(r.partialValue)
    }

    /// Integers by value, strings ordinally; anything else is an error.
    private static func compare(_ a: Arguments) throws -> Int {
        try a.arity(2...2)
        switch (a[0].value, a[1].value) {
        case (.number, .number):
            let x = a[0].intValue ?? 0, y = a[1].intValue ?? 0
            return x < y ? -1 : x > y ? 1 : 0
        case (.string(let x), .string(let y)):
            return x < y ? -1 : x > y ? 1 : 0
        default:
            throw a.fail("compares two integers or two strings, found \(a[0].kindName) and \(a[1].kindName)")
        }
    }
}
