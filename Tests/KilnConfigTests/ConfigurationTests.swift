import Foundation
import KilnBuild
import KilnConfig
import KilnTemplates
import Logging
import Testing

@Suite struct ConfigurationTests {
    static let example = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("deploy/kiln.yaml").path

    @Test func theExampleConfiguration() throws {
        let c = try KilnConfiguration.load(path: Self.example)
        #expect(c.dataDir == "/var/lib/kiln")
        #expect(c.logFormat == .logfmt && c.logLevel == .info)
        #expect(c.author?.email == "kiln@example.com")
        #expect(c.regions["northeurope"] == "/srv/kiln-replicas/northeurope")
        #expect(c.identities.identities.first?.name == "aibBuilderIdentity")
        let repo = try #require(c.repositories.first)
        #expect(repo.name == "images" && repo.branch == "main" && repo.path == "templates" && repo.intervalSeconds == 60)
        #expect(repo.tokenFile == "/etc/kiln/git.token" && repo.webhookSecretFile == "/etc/kiln/webhook.secret")
        #expect(c.listen?.text == "0.0.0.0:8080" && c.listen?.host == "0.0.0.0" && c.listen?.port == 8080)
        let map = c.regionMap(defaultRoot: "/var/lib/kiln/regions")
        #expect(try map.directory(for: "North Europe") == "/srv/kiln-replicas/northeurope")
        #expect(c.imageRefreshSeconds == 86400 && c.debianSources == DebianSources())
    }

    @Test func imageRefreshSettings() throws {
        let c = try KilnConfiguration.parse(
            """
            images:
              refreshInterval: 6h
              mirror: https://user:pw@mirror.internal/debian
              extraSources: ["deb [trusted=yes] file:/srv/pkgs ./"]
              include: [kiln-agent]
            """, file: "k.yaml")
        #expect(c.imageRefreshSeconds?.rounded() == 21600)
        #expect(c.debianSources.securityMirror == "https://user:pw@mirror.internal/debian-security")
        #expect(c.debianSources.extra.map(\.description) == ["deb [trusted=yes] file:/srv/pkgs ./"] && c.debianSources.include == ["kiln-agent"])
        let effective = "\(c.effective(dataDir: "/d"))"
        #expect(!effective.contains("pw@") && effective.contains("mirror.internal"), "\(effective)")
        do {
            _ = try KilnConfiguration.parse(
                """
                images:
                  refreshInterval: 10s
                  mirror: ftp://mirror/debian
                  extraSources: ["deb-src http://x/debian bookworm main", 3]
                  include: ["Bad;name"]
                """, file: "k.yaml")
            Issue.record("accepted")
        } catch {
            let text = error.description
            for expected in [
                "k.yaml:2: $.images.refreshInterval: expected a duration of at least 1m, like 6h or 24h; found '10s'",
                "k.yaml:3: $.images.mirror: expected an http(s) or file: URL of a Debian mirror; found 'ftp://mirror/debian'",
                "$.images.extraSources[0]: 'deb-src http://x/debian bookworm main' is not an APT source line: it must start with 'deb '",
                "$.images.extraSources[1]: expected a string",
                "$.images.include[0]: 'Bad;name' is not a Debian package name"
            ] {
                #expect(text.contains(expected), "\(expected) not in \(text)")
            }
        }
    }

    @Test func metricsListen() throws {
        let c = try KilnConfiguration.parse("server:\n  listen: 0.0.0.0:8080\n  metricsListen: 127.0.0.1:9090\n", file: "k.yaml")
        #expect(c.listen?.text == "0.0.0.0:8080" && c.metricsListen?.text == "127.0.0.1:9090")
        #expect {
            _ = try KilnConfiguration.parse("server:\n  metricsListen: 127.0.0.1:99999\n", file: "k.yaml")
        } throws: { error in
            let text = "\(error)"
            return text.contains("k.yaml:2: $.server.metricsListen: '127.0.0.1:99999' is not a listen address: write it as HOST:PORT")
                && text.contains("k.yaml:2: $.server.metricsListen: needs server.listen")
        }
    }

    @Test func gitTimeout() throws {
        let c = try KilnConfiguration.parse(
            "repositories:\n  - url: https://git.example.com/a.git\n    timeout: 2m\n  - url: https://git.example.com/b.git\n", file: "k.yaml")
        #expect(c.repositories.map(\.timeoutSeconds) == [120, 60])
        #expect {
            _ = try KilnConfiguration.parse("repositories:\n  - url: https://git.example.com/a.git\n    timeout: 0s\n", file: "k.yaml")
        } throws: { "\($0)".contains("k.yaml:3: $.repositories[0].timeout: expected a duration of at least 1s, like 30s or 2m; found '0s'") }
        for bad in ["inf", "1e20s", "nan", "8d"] {
            #expect(throws: (any Error).self, "\(bad)") {
                _ = try KilnConfiguration.parse(
                    "repositories:\n  - url: https://git.example.com/a.git\n    timeout: \(bad)\n    interval: \(bad)\n", file: "k.yaml")
            }
        }
    }

    @Test func everyProblemNamesTheKeyAndLine() throws {
        let text = """
            dataDir: relative/path
            parallelism: 0
            logging:
              format: xml
            autor: Someone <a@b.c>
            repositories:
              - url: ext::sh -c evil
                interval: soon
                credentials:
                  token: abc123
              - url: https://user:secret@git.example.com/x.git
              - url: https://ghp_0123456789@git.example.com/y.git
              - name: again
                url: https://git.example.com/z.git
              - name: twice
                url: https://git.example.com/z.git
            """
        #expect {
            _ = try KilnConfiguration.parse(text, file: "kiln.yaml")
        } throws: { error in
            let lines = "\(error)".split(separator: "\n").map(String.init)
            let expected = [
                "kiln.yaml:1: $.dataDir: expected an absolute path, found 'relative/path'",
                "kiln.yaml:2: $.parallelism: expected a whole number from 1 to 64",
                "kiln.yaml:4: $.logging.format: 'xml' is not one of text, logfmt, json",
                "kiln.yaml:5: $.autor: unknown key; did you mean 'author'?",
                "kiln.yaml:7: $.repositories[0].url: unsupported transport in 'ext::sh -c evil'; use https, ssh, file or a path",
                "kiln.yaml:8: $.repositories[0].interval: expected a duration of at least 1s, like 30s or 5m; found 'soon'",
                "kiln.yaml:10: $.repositories[0].credentials.token: a token may not be written in the configuration; use tokenFile or tokenEnv",
                "kiln.yaml:11: $.repositories[1].url: the URL carries a password; put the token in credentials.tokenFile or tokenEnv",
                "kiln.yaml:12: $.repositories[2].url: the URL carries a user name, often a token (https://TOKEN@host/…); put the token in credentials.tokenFile or tokenEnv",
                "kiln.yaml:15: $.repositories[4].branch: repositories[3] already watches branch main of this URL; one entry per branch"
            ]
            for e in expected where !lines.contains(e) { Issue.record("missing: \(e)\nall:\n\(lines.joined(separator: "\n"))") }
            return lines.count == expected.count
        }
    }

    @Test func secretsAreMaskedInTheEffectiveSettings() throws {
        let c = try KilnConfiguration.parse(
            """
            identities:
              - name: builder
                credentials:
                  - urlPrefix: https://artifacts.example.com/
                    token: s3cr3t-literal-token
            repositories:
              - url: https://git.example.com/x.git
                credentials: { tokenEnv: GIT_TOKEN }
            """, file: "k.yaml")
        let data = try JSONEncoder().encode(c.effective(dataDir: "/tmp/x"))
        let text = String(decoding: data, as: UTF8.self)
        #expect(!text.contains("s3cr3t-literal-token"))
        #expect(text.contains("****") && text.contains("GIT_TOKEN"))
    }

    @Test func trustSettings() throws {
        let c = try KilnConfiguration.parse(
            """
            artifacts:
              allowedFileRoots: [/srv/artifacts]
              allowedHosts: [mirror.internal, "*.corp.example", 10.20.0.0/16, "fd00::/8"]
            distribution:
              allowedVhdRoots: [/srv/vhds]
            build:
              network: isolated
              allowNetworks: [10.30.0.0/24]
            """, file: "k.yaml")
        #expect(c.artifactPolicy.fileRoots == ["/srv/artifacts"])
        #expect(c.artifactPolicy.allowedHostNames == ["mirror.internal", "*.corp.example"])
        #expect(c.artifactPolicy.allowedNetworks.map(\.description) == ["10.20.0.0/16", "fd00::/8"])
        #expect(c.artifactPolicy.vhdRoots == ["/srv/vhds"])
        #expect(c.buildNetwork == .isolated(allow: ["10.30.0.0/24"]))
        #expect(try KilnConfiguration.parse("build:\n  network: host\n", file: "k.yaml").buildNetwork == .host)
        do {
            _ = try KilnConfiguration.parse(
                """
                artifacts:
                  allowedFileRoots: [relative/dir]
                  allowedHosts: [10.0.0.300/8, "bad host!"]
                build:
                  network: bridged
                  allowNetworks: [fd00::/8]
                """, file: "k.yaml")
            Issue.record("accepted")
        } catch {
            let text = error.description
            for expected in [
                "k.yaml:2: $.artifacts.allowedFileRoots[0]: expected an absolute directory",
                "k.yaml:3: $.artifacts.allowedHosts[0]: '10.0.0.300/8' is not a CIDR block",
                "$.artifacts.allowedHosts[1]: 'bad host!' is not a host name",
                "k.yaml:5: $.build.network: 'bridged' is not one of isolated, host",
                "$.build.allowNetworks[0]: 'fd00::/8' is not an IPv4 CIDR block"
            ] {
                #expect(text.contains(expected), "\(expected) not in \(text)")
            }
        }
    }

    @Test func aYAMLSyntaxErrorHasALine() {
        #expect {
            _ = try KilnConfiguration.parse("dataDir: /x\nregions: [unclosed\n", file: "k.yaml")
        } throws: { error in
            "\(error)".hasPrefix("k.yaml:") && !"\(error)".hasPrefix("k.yaml:0:")
        }
    }
}

@Suite struct LogFormatTests {
    let date = Date(timeIntervalSince1970: 1_700_000_000)
    let fields: Logger.Metadata = ["template": "/subscriptions/x/imageTemplates/base", "run": "r-1", "error": "exit 7: \"boom\"\nnext"]

    @Test func logfmtQuotesWhatNeedsIt() {
        let line = KilnLogHandler.render(
            date: date, level: .notice, label: "kiln.core", message: "template provisioning failed", fields: fields, format: .logfmt)
        #expect(
            line
                == #"time=2023-11-14T22:13:20.000Z level=notice logger=kiln.core msg="template provisioning failed" error="exit 7: \"boom\"\nnext" run=r-1 template=/subscriptions/x/imageTemplates/base"#
        )
    }

    @Test func jsonIsOneObjectPerLine() throws {
        let line = KilnLogHandler.render(date: date, level: .error, label: "kiln.gitops", message: "push failed", fields: fields, format: .json)
        #expect(!line.contains("\n"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
        #expect(object["level"] == "error" && object["msg"] == "push failed" && object["run"] == "r-1" && object["error"] == "exit 7: \"boom\"\nnext")
    }
}
