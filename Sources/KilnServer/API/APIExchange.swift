import Foundation
import Hummingbird
import KilnCore
import KilnStore
import KilnTemplates

/// One REST API request as the handlers see it: parsed, authenticated and with its api-version checked.
public struct APIRequest: Sendable {
    public var method: HTTPRequest.Method
    public var route: ARMRoute
    public var apiVersion: APIVersion
    public var body: [UInt8]
    public var caller: APIToken
    /// `scheme://host[:port]` the client reached, for the absolute URLs of `Azure-AsyncOperation`, `Location`
    /// and `nextLink`.
    public var baseURL: String
    /// The `$skipToken` of a list's next page.
    public var skipToken: String?

    /// The caller as `systemData` names it: the token's configured name.
    public var actor: ResourceActor { ResourceActor(caller.name, kind: .application) }

    public init(
        method: HTTPRequest.Method, route: ARMRoute, apiVersion: APIVersion, body: [UInt8] = [], caller: APIToken, baseURL: String,
        skipToken: String? = nil
    ) {
        self.method = method
        self.route = route
        self.apiVersion = apiVersion
        self.body = body
        self.caller = caller
        self.baseURL = baseURL
        self.skipToken = skipToken
    }

    public var text: String { String(decoding: body, as: UTF8.self) }
}

/// A REST API answer before HTTP: a status, the LRO headers, a JSON body.
public struct APIResponse: Sendable {
    public var status: HTTPResponse.Status
    public var headers: [(name: String, value: String)]
    public var body: Data?

    public init(status: HTTPResponse.Status, headers: [(name: String, value: String)] = [], body: Data? = nil) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// `value` as JSON (keys sorted, slashes unescaped).
    public static func json(_ status: HTTPResponse.Status, _ value: some Encodable, headers: [(name: String, value: String)] = []) -> APIResponse {
        let data = (try? KilnJSON.encoder().encode(value)) ?? Data("{}".utf8)
        return APIResponse(status: status, headers: headers, body: data)
    }

    public static func error(_ e: ARMError) -> APIResponse { json(e.status, e) }

    /// The header's value, ignoring the name's case.
    public func header(_ name: String) -> String? { headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value }
}
