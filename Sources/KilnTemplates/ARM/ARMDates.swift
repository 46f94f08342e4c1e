import Foundation

/// Dates as ARM's date functions read and write them: ISO 8601 in, .NET date format strings out
/// (`utcNow('yyyy-MM-dd')`, `dateTimeAdd(…, 'P1D', 'u')`), ISO 8601 durations, Unix epochs. Always UTC, the
/// invariant culture (English month and day names).
enum ARMDates {
    static let gregorian: Calendar = {
        var c = Calendar(identifier: .gregorian)
        c.timeZone = TimeZone(identifier: "UTC")!
        c.locale = Locale(identifier: "en_US_POSIX")
        return c
    }()

    /// Parses `2020-04-07T14:53:14Z`, with fractions or an offset, or with a space for the `T`.
    static func parse(_ text: String) -> Date? {
        let t = text.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: " ", with: "T")
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = f.date(from: t) { return d }
        f.formatOptions = [.withInternetDateTime]
        if let d = f.date(from: t) { return d }
        // No zone: UTC.
        f.formatOptions = [.withFullDate, .withTime, .withColonSeparatorInTime, .withDashSeparatorInDate]
        f.timeZone = TimeZone(identifier: "UTC")
        if let d = f.date(from: t) { return d }
        f.formatOptions = [.withFullDate]
        return f.date(from: t)
    }

    /// An ISO 8601 duration (`P1Y2M3DT4H5M6S`, `PT1H`, `-P1D`, `P2W`) added to `date`.
    static func add(_ duration: String, to date: Date) -> Date? {
        var s = Substring(duration.uppercased())
        var sign = 1
        if s.hasPrefix("-") {
            sign = -1
            s = s.dropFirst()
        }
        guard s.hasPrefix("P"), s.count > 1 else { return nil }
        s = s.dropFirst()
        var components = DateComponents()
        var seconds = 0.0
        var inTime = false
        var number = ""
        for ch in s {
            if ch == "T" {
                guard number.isEmpty, !inTime else { return nil }
                inTime = true
            } else if ch.isNumber || ch == "." || ch == "," {
                number.append(ch == "," ? "." : ch)
            } else {
                guard let v = Double(number), v.isFinite, v < 1e7 else { return nil }  // 10 million days is past year 9999
                number = ""
                let n = Int(v) * sign
                switch (ch, inTime) {
                case ("Y", false): components.year = (components.year ?? 0) + n
                case ("M", false): components.month = (components.month ?? 0) + n
                case ("W", false): components.day = (components.day ?? 0) + 7 * n
                case ("D", false): components.day = (components.day ?? 0) + n
                case ("H", true): seconds += v * 3600 * Double(sign)
                case ("M", true): seconds += v * 60 * Double(sign)
                case ("S", true): seconds += v * Double(sign)
                default: return nil
                }
            }
        }
        guard number.isEmpty, let moved = gregorian.date(byAdding: components, to: date) else { return nil }
        let result = moved.addingTimeInterval(seconds)
        // .NET's DateTime: years 1 to 9999.
        guard result.timeIntervalSince1970 >= -62_135_596_800, result.timeIntervalSince1970 <= 253_402_300_799 else { return nil }
        return result
    }

    /// .NET's `DateTime.ToString(format)` in the invariant culture: the standard one-letter formats and custom
    /// patterns (`yyyy-MM-dd-HH-mm-ss`, `'literal'`, `\\x`).
    static func format(_ date: Date, _ format: String) throws -> String {
        let standard: [String: String] = [
            "d": "MM/dd/yyyy", "D": "dddd, dd MMMM yyyy", "f": "dddd, dd MMMM yyyy HH:mm", "F": "dddd, dd MMMM yyyy HH:mm:ss",
            "g": "MM/dd/yyyy HH:mm", "G": "MM/dd/yyyy HH:mm:ss", "M": "MMMM dd", "m": "MMMM dd", "O": "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK",
            "o": "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK", "R": "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'", "r": "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'",
            "s": "yyyy'-'MM'-'dd'T'HH':'mm':'ss", "t": "HH:mm", "T": "HH:mm:ss", "u": "yyyy'-'MM'-'dd HH':'mm':'ss'Z'",
            "U": "dddd, dd MMMM yyyy HH:mm:ss", "Y": "yyyy MMMM", "y": "yyyy MMMM"
        ]
        let pattern = format.count == 1 ? (standard[format] ?? "") : format
        guard !pattern.isEmpty else { throw FormatError(message: "'\(format)' is not a .NET date format") }
        return try custom(date, pattern)
    }

    struct FormatError: Error { var message: String }

    private static let months = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]
    private static let days = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]

    private static func custom(_ date: Date, _ pattern: String) throws -> String {
        let c = gregorian.dateComponents([.year, .month, .day, .hour, .minute, .second, .nanosecond, .weekday], from: date)
        let chars = Array(pattern)
        var out = ""
        var i = 0
        func pad(_ v: Int, _ n: Int) -> String { String(repeating: "0", count: max(0, n - String(v).count)) + String(v) }
        while i < chars.count {
            let ch = chars[i]
            var run = 1
            while i + run < chars.count, chars[i + run] == ch { run += 1 }
            switch ch {
            case "y":
                let y = c.year!
                out += run == 1 ? String(y % 100) : run == 2 ? pad(y % 100, 2) : pad(y, run)
            case "M":
                let m = c.month!
                out += run == 1 ? String(m) : run == 2 ? pad(m, 2) : run == 3 ? String(months[m - 1].prefix(3)) : months[m - 1]
            case "d":
                let d = c.day!
                let w = days[c.weekday! - 1]
                out += run == 1 ? String(d) : run == 2 ? pad(d, 2) : run == 3 ? String(w.prefix(3)) : w
            case "H": out += run == 1 ? String(c.hour!) : pad(c.hour!, 2)
            case "h":
                let h12 = c.hour! % 12 == 0 ? 12 : c.hour! % 12
                out += run == 1 ? String(h12) : pad(h12, 2)
            case "m": out += run == 1 ? String(c.minute!) : pad(c.minute!, 2)
            case "s": out += run == 1 ? String(c.second!) : pad(c.second!, 2)
            case "t": out += run == 1 ? (c.hour! < 12 ? "A" : "P") : (c.hour! < 12 ? "AM" : "PM")
            case "f", "F":
                guard run <= 7 else { throw FormatError(message: "'\(String(repeating: ch, count: run))' has more than 7 fraction digits") }
                var digits = String(pad(c.nanosecond! / 100, 7).prefix(run))
                if ch == "F" { while digits.hasSuffix("0") { digits.removeLast() } }
                out += digits
            case "K", "z":
                out += ch == "K" ? "Z" : run == 1 ? "+0" : run == 2 ? "+00" : "+00:00"
            case "'", "\"":
                guard let close = chars[(i + 1)...].firstIndex(of: ch) else { throw FormatError(message: "unterminated quote in '\(pattern)'") }
                out += String(chars[(i + 1)..<close])
                i = close + 1
                continue
            case "\\":
                if i + 1 < chars.count { out.append(chars[i + 1]) }
                i += 2
                continue
            case "%":
                i += 1
                continue
            case "g": out += "A.D."
            default:
                out += String(repeating: ch, count: run)
            }
            i += run
        }
        return out
    }
}

extension ARMFunctions {
    static let dates: [String: Function] = [
        "datetimeadd": { a in
            try a.arity(2...3)
            guard let base = ARMDates.parse(try a.string(0)) else { throw a.fail("'\(try a.string(0))' is not an ISO 8601 date and time") }
            guard let moved = ARMDates.add(try a.string(1), to: base) else {
                throw a.fail("'\(try a.string(1))' is not an ISO 8601 duration such as P1D or PT1H")
            }
            do {
                return .string(try ARMDates.format(moved, a.count > 2 ? try a.string(2) : "M/d/yyyy h:mm:ss tt"))
            } catch let e as ARMDates.FormatError {
                throw a.fail(e.message)
            }
        },
        "datetimefromepoch": { a in
            try a.arity(1...1)
            let seconds = try a.int(0)
            guard seconds >= -62_135_596_800, seconds <= 253_402_300_799 else { throw a.fail("\(seconds) is outside the years 1 to 9999") }
            let f = ISO8601DateFormatter()
            f.formatOptions = [.withInternetDateTime]
            return .string(f.string(from: Date(timeIntervalSince1970: TimeInterval(seconds))))
        },
        "datetimetoepoch": { a in
            try a.arity(1...1)
            guard let d = ARMDates.parse(try a.string(0)) else { throw a.fail("'\(try a.string(0))' is not an ISO 8601 date and time") }
            return .int(Int(d.timeIntervalSince1970.rounded(.down)))
        }
    ]
}
