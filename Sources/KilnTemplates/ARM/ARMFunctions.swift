import Foundation

/// ARM's pure functions: each result depends on the arguments alone, so they are evaluated after their
/// arguments. Functions that are lazy (`if`, `and`, `or`), take lambdas, or read the deployment (parameters,
/// scope, copy loops) are the evaluator's own (`ARMEvaluator.call`).
enum ARMFunctions {
    typealias Function = @Sendable (Arguments) throws -> SourceNode

    /// Every pure function, keyed by its lower-cased name (ARM function names ignore case).
    static let all: [String: Function] = {
        var all: [String: Function] = [:]
        for table in [strings, encodings, collections, objects, comparisons, numbers, dates, networks] {
            all.merge(table) { a, _ in a }
        }
        return all
    }()

    /// A call's evaluated arguments, with the checks every function makes, worded once.
    struct Arguments: Sendable {
        /// The function as written (for messages).
        var name: String
        var values: [SourceNode]

        var count: Int { values.count }
        subscript(i: Int) -> SourceNode { values[i] }

        func arity(_ range: ClosedRange<Int>) throws {
            guard range.contains(values.count) else {
                let expected =
                    range.lowerBound == range.upperBound
                    ? "\(range.lowerBound)" : range.upperBound == Int.max ? "at least \(range.lowerBound)" : "\(range.lowerBound) to \(range.upperBound)"
                throw ARMEvaluator.EvalError(
                    message: "\(name)() takes \(expected) argument\(range.upperBound == 1 ? "" : "s"), found \(values.count)")
            }
        }

        func fail(_ message: String) -> ARMEvaluator.EvalError { ARMEvaluator.EvalError(message: "\(name)(): \(message)") }

        func string(_ i: Int) throws -> String {
            guard case .string(let s) = values[i].value else { throw fail("argument \(i + 1) must be a string, found \(values[i].kindName)") }
            return s
        }
        /// A string, or a number or boolean by its text (where ARM converts).
        func text(_ i: Int) throws -> String {
            switch values[i].value {
            case .string, .number, .bool: return values[i].armString
            default: throw fail("argument \(i + 1) must be a string, found \(values[i].kindName)")
            }
        }
        func int(_ i: Int) throws -> Int {
            guard case .number(let n) = values[i].value, let v = n.int else {
                throw fail("argument \(i + 1) must be an integer, found \(values[i].kindName)")
            }
            return v
        }
        func bool(_ i: Int) throws -> Bool {
            guard case .bool(let b) = values[i].value else { throw fail("argument \(i + 1) must be a boolean, found \(values[i].kindName)") }
            return b
        }
        func array(_ i: Int) throws -> [SourceNode] {
            guard case .array(let a) = values[i].value else { throw fail("argument \(i + 1) must be an array, found \(values[i].kindName)") }
            return a
        }
        func object(_ i: Int) throws -> [SourceNode.Member] {
            guard case .object(let m) = values[i].value else { throw fail("argument \(i + 1) must be an object, found \(values[i].kindName)") }
            return m
        }
    }
}
