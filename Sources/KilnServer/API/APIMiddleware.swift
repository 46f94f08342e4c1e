import Foundation
import HTTPTypes
import Hummingbird
import KilnCore
import KilnTemplates
import Logging

/// The REST API on a Hummingbird router: every request under `/subscriptions/…` or `/providers/…` (matched
/// ignoring case, as ARM does) is answered here; anything else goes on to the router's other routes (the
/// controller's webhooks and health, when they share a listener).
///
/// Order of checks, each answered in ARM's envelope: the path (404, or 400 for a name that breaks its pattern),
/// the token (401), the api-version (400), the token's role and scope (403), the body's type and size (415, 413),
/// then the operation. Every answer carries `x-ms-request-id` and echoes `x-ms-correlation-request-id` and
/// `x-ms-client-request-id`.
public struct APIMiddleware<Context: RequestContext>: RouterMiddleware {
    public let api: ImageTemplateAPI
    public let access: APIAccess
    /// `https` behind TLS, else `http`: the scheme of the URLs the API hands out.
    public let scheme: String

    /// ARM's request size limit.
    public static var maxBody: Int { 4 << 20 }

    public init(api: ImageTemplateAPI, access: APIAccess, scheme: String) {
        self.api = api
        self.access = access
        self.scheme = scheme
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let first = request.uri.path.split(separator: "/", maxSplits: 1).first.map { $0.lowercased() }
        guard first == "subscriptions" || first == "providers" else { return try await next(request, context) }
        let requestId = UUID().uuidString.lowercased()
        let answer = await respond(request)
        var fields = HTTPFields()
        fields[.contentType] = answer.body == nil ? nil : "application/json; charset=utf-8"
        for (name, value) in answer.headers { if let n = HTTPField.Name(name) { fields[n] = value } }
        fields[HTTPField.Name("x-ms-request-id")!] = requestId
        let correlation = request.headers[HTTPField.Name("x-ms-correlation-request-id")!].flatMap(Self.safeId) ?? requestId
        fields[HTTPField.Name("x-ms-correlation-request-id")!] = correlation
        if let client = request.headers[HTTPField.Name("x-ms-client-request-id")!].flatMap(Self.safeId) {
            fields[HTTPField.Name("x-ms-client-request-id")!] = client
        }
        api.logger.debug(
            "api request",
            metadata: [
                "method": "\(request.method)", "path": "\(request.uri.path.prefix(300))", "status": "\(answer.status.code)", "request-id": "\(requestId)"
            ])
        let body = answer.body.map { ResponseBody(byteBuffer: ByteBuffer(bytes: $0)) } ?? ResponseBody()
        return Response(status: answer.status, headers: fields, body: body)
    }

    /// A header value echoed back only when it looks like an id (no header injection, no token echoed by mistake).
    static func safeId(_ s: String) -> String? {
        s.count <= 128 && s.utf8.allSatisfy { ARMRoute.isASCIIAlphanumeric($0) || $0 == 0x2D || $0 == 0x2E || $0 == 0x5F } ? s : nil
    }

    func respond(_ request: Request) async -> APIResponse {
        let route: ARMRoute
        do {
            route = try ARMRoute.parse(path: request.uri.path)
        } catch {
            switch error {
            case .noSuchPath: return .error(.noSuchPath(request.method.rawValue, request.uri.path))
            case .invalidName(let parameter, let value, let rule): return .error(.invalidName(parameter: parameter, value: value, rule: rule))
            }
        }
        let caller: APIToken
        switch access.authenticate(request.headers[.authorization]) {
        case .success(let t): caller = t
        case .failure(let e):
            var r = APIResponse.error(e)
            r.headers.append(("WWW-Authenticate", "Bearer realm=\"kiln\", error=\"invalid_token\", error_description=\"\(e.message)\""))
            return r
        }
        // A method the path does not have is 405, whatever the body or api-version (RFC 9110: with Allow).
        guard route.allowedMethods.contains(request.method) else {
            var r = APIResponse.error(.methodNotAllowed(request.method.rawValue))
            r.headers.append(("Allow", route.allowedMethods.map(\.rawValue).joined(separator: ", ")))
            return r
        }
        let query = request.uri.queryParameters
        let version: APIVersion
        switch APIVersionGate.check(query["api-version"].map(String.init)) {
        case .success(let v): version = v
        case .failure(let e): return .error(e)
        }
        let action = ImageTemplateAPI.action(request.method, route)
        // An operation's status is checked against the resource it acts on, once it is read.
        if case .operationStatus = route {
        } else if let denied = access.authorize(caller, write: action.write, resourceId: route.scopeId, action: action.name) {
            return .error(denied)
        }
        var body: [UInt8] = []
        if request.method == .put || request.method == .patch {
            let type = request.headers[.contentType]
            guard let type, type.lowercased().split(separator: ";").first?.trimmingCharacters(in: .whitespaces) == "application/json" else {
                return .error(.unsupportedMediaType(type))
            }
            do {
                let buffer = try await request.body.collect(upTo: Self.maxBody)
                body = buffer.getBytes(at: buffer.readerIndex, length: buffer.readableBytes) ?? []
            } catch let e as HTTPResponseError where e.status == .contentTooLarge {
                return .error(.tooLarge(limit: Self.maxBody))
            } catch {
                return .error(.notJSON("the body could not be read: \(error)"))
            }
        }
        let r = APIRequest(
            method: request.method, route: route, apiVersion: version, body: body, caller: caller, baseURL: baseURL(request),
            skipToken: query["$skipToken"].map(String.init))
        return await api.handle(r)
    }

    /// Where the client reached this server, from the request's authority (only a host and port are accepted;
    /// anything else falls back to loopback, so no URL Kiln hands out can be steered elsewhere by a header).
    func baseURL(_ request: Request) -> String {
        let authority = request.head.authority ?? ""
        let ok =
            !authority.isEmpty && authority.count <= 255
            && authority.utf8.allSatisfy { ARMRoute.isASCIIAlphanumeric($0) || ".-:[]".utf8.contains($0) }
        return "\(scheme)://\(ok ? authority : "127.0.0.1")"
    }
}
