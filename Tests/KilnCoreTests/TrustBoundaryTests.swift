import Synchronization
import Foundation
@testable import KilnCore
import KilnTemplates
import Testing

/// What a template may make the core read or reach when it stages artifacts, whatever the decoder let
/// through (a template from the API is checked here too): host files, symlinks out of the repository,
/// internal addresses and redirects to them, and the modes of what is staged.
@Suite struct TrustBoundaryTests {
    @Test func anUntrustedTemplateCannotStageAHostFile() async throws {
        let s = try Scratch(policy: .untrusted)
        defer { s.cleanup() }
        let t = try load(templateJSON(customize: #"[{"type": "File", "name": "f", "sourceUri": "file:///etc/shadow", "destination": "/tmp/s"}]"#))
        let r = try await s.core.create(t)
        #expect(r.provisioningState == .failed)
        #expect(r.record.provisioningErrorCode == "NoCustomizerScript")
        #expect(r.record.provisioningErrorMessage?.contains("$.properties.customize[0].sourceUri") == true)
        #expect(r.record.provisioningErrorMessage?.contains("allowedFileRoots is empty") == true, "\(r.record.provisioningErrorMessage ?? "")")
        let staged = (try? FileManager.default.contentsOfDirectory(atPath: r.record.stagingDirectory + "/artifacts")) ?? []
        #expect(staged.isEmpty, "\(staged)")
    }

    @Test func onlyRegularFilesAreStaged() async throws {
        // Even a trusted template: a device or a FIFO could block or never end.
        let fetcher = ArtifactFetcher(identity: nil, relative: nil, policy: ArtifactPolicy.untrusted.trustingLocalFiles)
        for device in ["file:///dev/zero", "file:///dev/stdin", "file:///proc/self"] {
            do {
                _ = try await fetcher.fetch(device)
                Issue.record("\(device) was read")
            } catch {
                #expect(error.description.contains("is not a regular file"), "\(error)")
            }
        }
    }

    @Test func aSymlinkOutOfTheRepositoryIsRefused() async throws {
        let s = try Scratch(policy: .untrusted)
        defer { s.cleanup() }
        try s.write("repo/templates/web.json", "{}")
        try s.write("repo/scripts/web.sh", "echo web\n")
        try FileManager.default.createSymbolicLink(atPath: s.dir + "/repo/scripts/evil.sh", withDestinationPath: "/etc/passwd")
        let source = DirectoryArtifactSource(templateFile: s.dir + "/repo/templates/web.json", repositoryRoot: s.dir + "/repo")
        // A sibling folder through '..' works; a link out of the repository and '..' past its root do not.
        #expect(try await source.read("../scripts/web.sh") == Data("echo web\n".utf8))
        await #expect(throws: FetchError.self) { try await source.read("../scripts/evil.sh") }
        #expect(try await source.read("../../etc/passwd") == nil)
        let t = try load(templateJSON(customize: #"[{"type": "Shell", "name": "s", "scriptUri": "../scripts/evil.sh"}]"#))
        let r = try await s.core.create(t, origin: TemplateOrigin(relativeArtifacts: source))
        #expect(r.provisioningState == .failed)
        #expect(r.record.provisioningErrorMessage?.contains("outside the repository") == true, "\(r.record.provisioningErrorMessage ?? "")")
    }

    @Test func stagedArtifactsAreReadableOnlyByKiln() async throws {
        let s = try Scratch()
        defer { s.cleanup() }
        try s.write("repo/scripts/a.sh", "echo a\n")
        let t = try load(templateJSON(customize: #"[{"type": "Shell", "name": "a", "scriptUri": "scripts/a.sh"}]"#))
        let origin = TemplateOrigin(relativeArtifacts: DirectoryArtifactSource(templateFile: s.dir + "/repo/t.json", repositoryRoot: nil))
        let r = try await s.core.create(t, origin: origin)
        #expect(r.provisioningState == .succeeded, "\(r.record.provisioningErrorMessage ?? "")")
        func mode(_ p: String) throws -> Int { try #require(FileManager.default.attributesOfItem(atPath: p)[.posixPermissions] as? Int) }
        #expect(try mode(r.record.stagingDirectory) == 0o700)
        #expect(try mode(r.record.stagingDirectory + "/artifacts") == 0o700)
        for a in r.record.artifacts { #expect(try mode(a.path) == 0o600) }
    }

    @Test func internalAddressesAndRedirectsToThemAreRefused() async throws {
        let server = try await ArtifactServer()
        defer { server.stop() }
        var closed = ArtifactFetcher(identity: nil, relative: nil, policy: .untrusted)
        closed.attempts = 1
        for url in [
            "http://127.0.0.1:\(server.port)/public.sh", "https://169.254.169.254/metadata/instance", "http://[::1]:\(server.port)/x",
            "http://localhost:\(server.port)/public.sh", "http://0.0.0.0:\(server.port)/public.sh"
        ] {
            do {
                _ = try await closed.fetch(url)
                Issue.record("\(url) was fetched")
            } catch {
                #expect(error.description.contains("address") || error.description.contains("build host itself"), "\(error)")
            }
        }
        // Allowed loopback, redirected to an address the policy refuses: the hop is checked, not followed.
        var loopbackOnly = ArtifactFetcher(identity: nil, relative: nil, policy: ArtifactPolicy(allowedNetworks: [AddressRange("127.0.0.1")!]))
        loopbackOnly.attempts = 1
        #expect(try await loopbackOnly.fetch(server.base + "/public.sh") == Data("echo public\n".utf8))
        #expect(try await loopbackOnly.fetch(server.base + "/redirect?to=/public.sh") == Data("echo public\n".utf8))
        for target in ["http://169.254.169.254/latest/meta-data/", "http://127.0.0.2:\(server.port)/public.sh", "http://[::1]:\(server.port)/public.sh"] {
            do {
                _ = try await loopbackOnly.fetch(server.base + "/redirect?to=" + target)
                Issue.record("the redirect to \(target) was followed")
            } catch {
                #expect(error.description.contains("redirected to"), "\(error)")
            }
        }
    }

    /// DNS rebinding: a name that answers an allowed address to the check must not be looked up again for
    /// the connection. `kiln-rebind.invalid` resolves nowhere on the system resolver (RFC 6761), so the fetch
    /// can only succeed by connecting to the address the check was given, and the check runs once per hop.
    @Test func theConnectionGoesToTheAddressThatWasChecked() async throws {
        let server = try await ArtifactServer()
        defer { server.stop() }
        let lookups = Counter()
        var fetcher = ArtifactFetcher(identity: nil, relative: nil, policy: ArtifactPolicy(allowedNetworks: [AddressRange("127.0.0.1")!]))
        fetcher.attempts = 1
        fetcher.resolve = { host, _ in
            lookups.increment()
            return host == "kiln-rebind.invalid" ? .success([IPAddress("127.0.0.1")!]) : .failure(FetchError("\(host): unknown"))
        }
        let url = "http://kiln-rebind.invalid:\(server.port)/public.sh"
        #expect(try await fetcher.fetch(url) == Data("echo public\n".utf8))
        #expect(lookups.value == 1)
        #expect(try await fetcher.fetch("http://kiln-rebind.invalid:\(server.port)/redirect?to=/public.sh") == Data("echo public\n".utf8))
        #expect(lookups.value == 3)
        // The same name answering a refused address is refused before any connection.
        fetcher.resolve = { _, _ in .success([IPAddress("127.0.0.1")!, IPAddress("10.0.0.7")!]) }
        do {
            _ = try await fetcher.fetch(url)
            Issue.record("a name with a refused address was fetched")
        } catch {
            #expect(error.description.contains("10.0.0.7"), "\(error)")
        }
    }

    @Test func aTokenIsNotSentToAnotherHostOrAfterARedirect() async throws {
        let server = try await ArtifactServer()
        defer { server.stop() }
        let identity = IdentityConfig.Identity(
            name: "builder",
            credentials: [
                .init(urlPrefix: "http://127.0.0.1:\(server.port)", secret: .literal(ArtifactServer.token))
            ])
        var fetcher = ArtifactFetcher(
            identity: identity, relative: nil,
            policy: ArtifactPolicy(allowedNetworks: [AddressRange("127.0.0.0/8")!], allowedHostNames: ["localhost"]))
        fetcher.attempts = 1
        // The prefix names 127.0.0.1 without a path: a URL of the same host gets the token.
        #expect(try await fetcher.fetch(server.base + "/private/setup.sh") == Data("echo private\n".utf8))
        // The same server by another name is another host: no token, so 401.
        do {
            _ = try await fetcher.fetch("http://localhost:\(server.port)/private/setup.sh")
            Issue.record("the token was sent to localhost")
        } catch {
            #expect(error.unauthorized, "\(error)")
        }
        // A redirect to another host drops the token too.
        do {
            _ = try await fetcher.fetch(server.base + "/redirect?to=http://localhost:\(server.port)/private/setup.sh")
            Issue.record("the token followed the redirect")
        } catch {
            #expect(error.unauthorized, "\(error)")
        }
    }
}

/// How many times a closure ran, from any task.
final class Counter: Sendable {
    private let count = Mutex(0)
    func increment() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}
