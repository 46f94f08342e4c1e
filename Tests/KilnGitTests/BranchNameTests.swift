import KilnGit
import Testing

/// Branch names as `git check-ref-format --branch` allows them.
@Suite struct BranchNameTests {
    @Test(arguments: ["main", "kiln/status", "release-1.2", "feature/x_y", "UPPER", "a.b"])
    func valid(_ name: String) { #expect(BranchName.isValid(name), "\(name)") }

    @Test(arguments: [
        "", "-x", "/main", "main/", "a..b", "a//b", "x.lock", "a@{1}", "@", "a b", "a~1", "a^", "a:b", "a?", "a*", "a[b",
        "a\\b", ".hidden", "a/.b", "end.", "tab\tname"
    ])
    func invalid(_ name: String) { #expect(!BranchName.isValid(name), "\(name)") }
}
