// Test support: a private git repository over smart HTTP (git's own http-backend behind HTTP Basic auth).
import Foundation

/// Serves every bare repository under `root` at `http://127.0.0.1:PORT/<name>.git` to a client that
/// authenticates with `token` as its password (any user name), fetch and push. Anything else gets 401. Each
/// request is appended to `requests` ("GET /r.git/info/refs 401"), so a test can see that credentials were
/// asked for and sent.
public struct PrivateGitServer: Sendable {
    public let root: String
    public let port: Int
    public let token: String
    public let pid: pid_t
    public var requestLog: String { root + "/requests.log" }

    public func url(_ repository: String) -> String { "http://127.0.0.1:\(port)/\(repository)" }

    /// The requests so far, one line each.
    public var requests: [String] {
        ((try? String(contentsOfFile: requestLog, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    public func stop() {
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }

    /// Starts the server and waits until it accepts connections.
    public static func start(root: String, token: String) async throws -> PrivateGitServer {
        let script = root + "/git-http.py"
        try Self.script.write(toFile: script, atomically: true, encoding: .utf8)
        let port = Int.random(in: 41000...48000)
        var pid: pid_t = 0
        let argv = ["/usr/bin/python3", script, root, String(port), token]
        var cArgs = argv.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        guard posix_spawn(&pid, argv[0], nil, nil, &cArgs, environ) == 0 else { throw PrivateGitServerError.spawnFailed }
        let server = PrivateGitServer(root: root, port: port, token: token, pid: pid)
        for _ in 0..<100 {
            if (try? sh("exec 3<>/dev/tcp/127.0.0.1/\(port)")) != nil { return server }
            try await Task.sleep(for: .milliseconds(50))
        }
        server.stop()
        throw PrivateGitServerError.notListening(port)
    }

    /// The server: decodes chunked request bodies (libgit2 sends pushes chunked), runs `git http-backend` as
    /// a CGI program and relays its answer.
    static let script = #"""
        import base64, http.server, os, subprocess, sys
        root, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def record(self, code):
                with open(os.path.join(root, "requests.log"), "a") as f:
                    f.write("%s %s %d\n" % (self.command, self.path, code))

            def authorized(self):
                header = self.headers.get("Authorization", "")
                if not header.startswith("Basic "):
                    return False
                try:
                    _, _, password = base64.b64decode(header[6:]).decode().partition(":")
                except Exception:
                    return False
                return password == token

            def body(self):
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(parts)
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def serve(self):
                data = self.body()
                if not self.authorized():
                    self.record(401)
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="private"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path, _, query = self.path.partition("?")
                env = dict(os.environ, GIT_PROJECT_ROOT=root, GIT_HTTP_EXPORT_ALL="1", PATH_INFO=path,
                           QUERY_STRING=query, REQUEST_METHOD=self.command, REMOTE_USER="kiln", REMOTE_ADDR="127.0.0.1",
                           CONTENT_TYPE=self.headers.get("Content-Type", ""), CONTENT_LENGTH=str(len(data)))
                out = subprocess.run(["git", "http-backend"], input=data, env=env, capture_output=True).stdout
                head, _, rest = out.partition(b"\r\n\r\n")
                status, headers = 200, []
                for line in head.split(b"\r\n"):
                    name, _, value = line.decode().partition(":")
                    if name.lower() == "status":
                        status = int(value.strip().split()[0])
                    elif name:
                        headers.append((name, value.strip()))
                self.record(status)
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(rest)))
                self.end_headers()
                self.wfile.write(rest)

            do_GET = serve
            do_POST = serve

        http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
        """#
}

public enum PrivateGitServerError: Error {
    case spawnFailed
    case notListening(Int)
}
