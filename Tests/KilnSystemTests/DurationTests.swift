import Foundation
import KilnSystem
import Testing

/// The one duration syntax of flags and the configuration file.
@Suite struct DurationTests {
    @Test(arguments: [
        ("30s", Duration.seconds(30)), ("5m", .seconds(300)), ("1h", .seconds(3600)), ("250ms", .milliseconds(250)),
        ("90", .seconds(90)), ("1.5s", .milliseconds(1500)), ("0", .zero), ("168h", .seconds(604_800)), (" 2m ", .seconds(120))
    ])
    func parses(_ text: String, _ expected: Duration) {
        #expect(Duration(text: text) == expected, "\(text)")
    }

    @Test(arguments: ["", "s", "-1s", "inf", "nan", "infs", "169h", "1e300", "5 minutes", "1d", "10x", "m5"])
    func refuses(_ text: String) {
        #expect(Duration(text: text) == nil, "\(text)")
    }

    @Test(arguments: [(Duration.milliseconds(1500), 1.5), (.seconds(90), 90), (.zero, 0), (.nanoseconds(1), 1e-9)])
    func inSeconds(_ d: Duration, _ seconds: Double) {
        #expect(abs(d.inSeconds - seconds) < 1e-12)
    }
}
