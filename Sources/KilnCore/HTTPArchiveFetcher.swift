import AsyncHTTPClient
import Foundation
import KilnBuild
import NIOCore

/// Reads release files of APT repositories for `kiln images refresh`. The repositories are the operator's
/// (the command line or the configuration names them, never a template), so the client follows redirects
/// like apt does; a file is at most 64 MiB (a Release file is a few hundred KiB, a flat Packages list more).
struct HTTPArchiveFetcher: ArchiveFetching {
    static let limit = 64 << 20

    func fetch(_ url: String) async throws(ArchiveError) -> Data? {
        do {
            let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(60))
            if response.status == .notFound || response.status == .forbidden { return nil }
            guard response.status == .ok else { throw ArchiveError.unreachable(url, "HTTP \(response.status.code)") }
            let body = try await response.body.collect(upTo: Self.limit)
            return Data(body.readableBytesView)
        } catch let e as ArchiveError {
            throw e
        } catch {
            throw .unreachable(url, "\(error)")
        }
    }
}
