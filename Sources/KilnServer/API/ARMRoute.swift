import Foundation
import HTTPTypes

/// An image template addressed by a request path: `/subscriptions/S/resourceGroups/G/providers/
/// Microsoft.VirtualMachineImages/imageTemplates/N`, with every part checked against the spec's patterns.
public struct TemplateAddress: Sendable, Hashable {
    public var subscription: String
    public var resourceGroup: String
    public var name: String

    public init(subscription: String, resourceGroup: String, name: String) {
        self.subscription = subscription
        self.resourceGroup = resourceGroup
        self.name = name
    }

    /// The resource id, in the case the request used for the parts the caller named (ARM keeps the caller's case).
    public var resourceId: String {
        "/subscriptions/\(subscription)/resourceGroups/\(resourceGroup)/providers/Microsoft.VirtualMachineImages/imageTemplates/\(name)"
    }
}

/// What a REST API request addresses. ARM matches the fixed segments (`subscriptions`, `resourceGroups`, the
/// provider, the types) ignoring case; names keep the case the caller wrote.
public enum ARMRoute: Sendable, Hashable {
    /// `GET /providers/Microsoft.VirtualMachineImages/operations`: the provider's operation catalogue.
    case providerOperations
    /// The templates of a subscription, or of one of its resource groups.
    case templates(subscription: String, resourceGroup: String?)
    case template(TemplateAddress)
    /// `POST …/run`, `POST …/cancel`.
    case action(TemplateAddress, Action)
    case runOutputs(TemplateAddress)
    case runOutput(TemplateAddress, name: String)
    case triggers(TemplateAddress)
    case trigger(TemplateAddress, name: String)
    /// `/subscriptions/S/providers/Microsoft.VirtualMachineImages/locations/L/operations/ID`: an operation's status.
    case operationStatus(subscription: String, location: String, id: String)

    public enum Action: String, Sendable, Hashable { case run, cancel }

    public static let provider = "Microsoft.VirtualMachineImages"

    /// The subscription the route lies in, if any (authorization scopes are checked against it).
    public var subscription: String? {
        switch self {
        case .providerOperations: return nil
        case .templates(let s, _), .operationStatus(let s, _, _): return s
        case .template(let a), .action(let a, _), .runOutputs(let a), .runOutput(let a, _), .triggers(let a), .trigger(let a, _):
            return a.subscription
        }
    }

    /// The methods the route answers: anything else is 405 with these in `Allow`.
    public var allowedMethods: [HTTPRequest.Method] {
        switch self {
        case .providerOperations, .templates, .runOutputs, .runOutput, .triggers, .operationStatus: return [.get]
        case .template: return [.get, .put, .patch, .delete]
        case .action: return [.post]
        case .trigger: return [.get, .put, .delete]
        }
    }

    /// The resource id the route reads or writes, for authorization and error targets.
    public var scopeId: String {
        switch self {
        case .providerOperations: return "/providers/\(Self.provider)"
        case .templates(let s, nil): return "/subscriptions/\(s)"
        case .templates(let s, let g?): return "/subscriptions/\(s)/resourceGroups/\(g)"
        case .template(let a), .action(let a, _), .runOutputs(let a), .triggers(let a): return a.resourceId
        case .runOutput(let a, let n): return a.resourceId + "/runOutputs/\(n)"
        case .trigger(let a, let n): return a.resourceId + "/triggers/\(n)"
        case .operationStatus(let s, _, _): return "/subscriptions/\(s)"
        }
    }
}

/// Why a path is not an API route.
public enum ARMRouteError: Error, Sendable, Hashable {
    /// No operation has this path (ARM: 404 with the path named).
    case noSuchPath
    /// A segment does not match its pattern: which parameter, the value (cut short), the rule.
    case invalidName(parameter: String, value: String, rule: String)
}

extension ARMRoute {
    /// `^[A-Za-z0-9-_.]{1,64}$`: imageTemplateName, runOutputName, triggerName (spec `parameters`).
    static func isResourceName(_ s: String) -> Bool {
        (1...64).contains(s.utf8.count) && s.utf8.allSatisfy { isASCIIAlphanumeric($0) || $0 == 0x2D || $0 == 0x5F || $0 == 0x2E }
            && s != "." && s != ".."  // the pattern allows them; as path components they would name the parent
    }

    /// `^[-\w\._\(\)]+$`, 1–90 (common-types v3); `\w` taken as ASCII letters, digits and underscore.
    static func isResourceGroupName(_ s: String) -> Bool {
        (1...90).contains(s.utf8.count) && s.utf8.allSatisfy { isASCIIAlphanumeric($0) || "-_.()".utf8.contains($0) } && s != "." && s != ".."
            && s.last != "."
    }

    /// Subscription ids are UUIDs on Azure; Kiln accepts any id of letters, digits and dashes (its examples use
    /// readable ones), never anything a path could be built from.
    static func isSubscriptionId(_ s: String) -> Bool {
        (1...64).contains(s.utf8.count) && s.utf8.allSatisfy { isASCIIAlphanumeric($0) || $0 == 0x2D }
    }

    /// `[a-z0-9-]`: operation ids are Kiln's own lower-case UUIDs; location names are letters and digits.
    static func isToken(_ s: String) -> Bool {
        (1...64).contains(s.utf8.count) && s.utf8.allSatisfy { isASCIIAlphanumeric($0) || $0 == 0x2D }
    }

    static func isASCIIAlphanumeric(_ c: UInt8) -> Bool { (0x30...0x39).contains(c) || (0x41...0x5A).contains(c) || (0x61...0x7A).contains(c) }

    /// Parses a request path (percent-encoded, as it arrived). A trailing slash is tolerated, as ARM does.
    public static func parse(path: String) throws(ARMRouteError) -> ARMRoute {
        var raw = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard raw.first == "" else { throw .noSuchPath }
        raw.removeFirst()
        if raw.last == "" { raw.removeLast() }
        // Each segment decoded on its own: an encoded slash (%2F) stays inside its segment and fails the name rules.
        var s: [String] = []
        for part in raw {
            guard !part.isEmpty, let decoded = part.removingPercentEncoding else { throw .noSuchPath }
            s.append(decoded)
        }
        func lit(_ i: Int, _ word: String) -> Bool { i < s.count && s[i].caseInsensitiveCompare(word) == .orderedSame }

        if s.count == 3, lit(0, "providers"), lit(1, provider), lit(2, "operations") { return .providerOperations }
        guard s.count >= 2, lit(0, "subscriptions") else { throw .noSuchPath }
        let sub = try check(s[1], "subscriptionId", isSubscriptionId, "letters, digits and '-', at most 64")
        // /subscriptions/S/providers/P/imageTemplates | /locations/L/operations/ID
        if lit(2, "providers") {
            guard lit(3, provider) else { throw .noSuchPath }
            if s.count == 5, lit(4, "imageTemplates") { return .templates(subscription: sub, resourceGroup: nil) }
            if s.count == 8, lit(4, "locations"), lit(6, "operations") {
                let location = try check(s[5], "location", isToken, "letters, digits and '-'")
                let id = try check(s[7], "operationId", isToken, "letters, digits and '-'")
                return .operationStatus(subscription: sub, location: location, id: id.lowercased())
            }
            throw .noSuchPath
        }
        guard lit(2, "resourceGroups"), s.count >= 7, lit(4, "providers"), lit(5, provider), lit(6, "imageTemplates") else { throw .noSuchPath }
        let group = try check(s[3], "resourceGroupName", isResourceGroupName, "1-90 letters, digits and '-_.()', not ending in '.'")
        if s.count == 7 { return .templates(subscription: sub, resourceGroup: group) }
        let name = try check(s[7], "imageTemplateName", isResourceName, "^[A-Za-z0-9-_.]{1,64}$")
        let address = TemplateAddress(subscription: sub, resourceGroup: group, name: name)
        switch s.count {
        case 8: return .template(address)
        case 9:
            if lit(8, "run") { return .action(address, .run) }
            if lit(8, "cancel") { return .action(address, .cancel) }
            if lit(8, "runOutputs") { return .runOutputs(address) }
            if lit(8, "triggers") { return .triggers(address) }
            throw .noSuchPath
        case 10:
            if lit(8, "runOutputs") { return .runOutput(address, name: try check(s[9], "runOutputName", isResourceName, "^[A-Za-z0-9-_.]{1,64}$")) }
            if lit(8, "triggers") { return .trigger(address, name: try check(s[9], "triggerName", isResourceName, "^[A-Za-z0-9-_.]{1,64}$")) }
            throw .noSuchPath
        default:
            throw .noSuchPath
        }
    }

    private static func check(_ value: String, _ parameter: String, _ rule: (String) -> Bool, _ text: String) throws(ARMRouteError) -> String {
        guard rule(value) else { throw .invalidName(parameter: parameter, value: String(value.prefix(80)), rule: text) }
        return value
    }
}
