/// An Azure resource id, parsed: `/subscriptions/{s}/resourceGroups/{rg}[/providers/{ns}/{type}/{name}[/{type}/{name}]...]`.
///
/// Kiln keeps subscription and resource-group names verbatim (any subscription id is accepted), but the
/// *shape* of every id in a template is checked, because a galleryImageId that points at a managed image
/// is a mistake that should fail at validation, not an hour into a build. Keywords (`subscriptions`,
/// `resourceGroups`, `providers`, provider namespaces and types) compare case-insensitively, as in Azure.
public struct ResourceID: Sendable, Hashable, CustomStringConvertible {
    public var subscription: String
    public var resourceGroup: String
    /// `Microsoft.Compute`, as written.
    public var providerNamespace: String?
    /// Type segments and names after the namespace: `[("galleries", "g"), ("images", "def")]`.
    public var segments: [(type: String, name: String)]

    public init(subscription: String, resourceGroup: String, providerNamespace: String? = nil, segments: [(type: String, name: String)] = []) {
        self.subscription = subscription
        self.resourceGroup = resourceGroup
        self.providerNamespace = providerNamespace
        self.segments = segments
    }

    public static func == (a: ResourceID, b: ResourceID) -> Bool { a.description.lowercased() == b.description.lowercased() }
    public func hash(into hasher: inout Hasher) { hasher.combine(description.lowercased()) }

    public var description: String {
        var s = "/subscriptions/\(subscription)/resourceGroups/\(resourceGroup)"
        if let ns = providerNamespace {
            s += "/providers/\(ns)"
            for seg in segments { s += "/\(seg.type)/\(seg.name)" }
        }
        return s
    }

    /// The last name segment (the resource's own name).
    public var name: String { segments.last?.name ?? resourceGroup }

    /// `Microsoft.Compute/galleries/images`, lower-cased for comparisons.
    public var fullType: String {
        guard let ns = providerNamespace else { return "resourcegroup" }
        return ([ns] + segments.map(\.type)).joined(separator: "/").lowercased()
    }

    /// Parses an id; nil when it is not shaped like one.
    public static func parse(_ text: String) -> ResourceID? {
        var parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.first == "" else { return nil }
        parts.removeFirst()
        if parts.last == "" { parts.removeLast() }
        guard parts.count >= 4,
            parts[0].lowercased() == "subscriptions", !parts[1].isEmpty,
            parts[2].lowercased() == "resourcegroups", !parts[3].isEmpty
        else { return nil }
        guard parts.allSatisfy({ !$0.isEmpty }) else { return nil }
        var id = ResourceID(subscription: parts[1], resourceGroup: parts[3])
        if parts.count == 4 { return id }
        guard parts.count >= 8, parts[4].lowercased() == "providers", (parts.count - 6) % 2 == 0 else { return nil }
        id.providerNamespace = parts[5]
        var i = 6
        while i < parts.count {
            id.segments.append((type: parts[i], name: parts[i + 1]))
            i += 2
        }
        return id
    }

    // MARK: Shapes used by image templates

    /// A resource type and what its names must look like.
    public struct Shape: Sendable {
        public var fullType: String
        public var example: String
        public init(_ fullType: String, example: String) {
            self.fullType = fullType.lowercased()
            self.example = example
        }
    }

    public static let imageTemplate = Shape(
        "Microsoft.VirtualMachineImages/imageTemplates",
        example: "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.VirtualMachineImages/imageTemplates/{name}")
    public static let managedImage = Shape(
        "Microsoft.Compute/images",
        example: "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Compute/images/{name}")
    public static let galleryImage = Shape(
        "Microsoft.Compute/galleries/images",
        example: "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Compute/galleries/{gallery}/images/{definition}")
    public static let galleryImageVersion = Shape(
        "Microsoft.Compute/galleries/images/versions",
        example: "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Compute/galleries/{gallery}/images/{definition}/versions/{x.y.z}")
    public static let userAssignedIdentity = Shape(
        "Microsoft.ManagedIdentity/userAssignedIdentities",
        example: "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}")
    public static let subnet = Shape(
        "Microsoft.Network/virtualNetworks/subnets",
        example: "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Network/virtualNetworks/{vnet}/subnets/{subnet}")
    public static let resourceGroupShape = Shape(
        "resourcegroup",
        example: "/subscriptions/{subscription}/resourceGroups/{group}")

    /// Parses `text` and checks it has `shape`; returns a reason when it does not.
    public static func parse(_ text: String, as shape: Shape) -> Result<ResourceID, ShapeError> {
        guard let id = parse(text) else {
            return .failure(ShapeError(message: "'\(text)' is not a resource id; expected \(shape.example)"))
        }
        guard id.fullType == shape.fullType else {
            let found =
                id.providerNamespace == nil
                ? "a resource group" : "a resource of type \(([id.providerNamespace!] + id.segments.map(\.type)).joined(separator: "/"))"
            return .failure(ShapeError(message: "'\(text)' is \(found); expected \(shape.example)"))
        }
        if !ResourceNames.isValidResourceGroup(id.resourceGroup) {
            return .failure(
                ShapeError(
                    message:
                        "'\(id.resourceGroup)' in '\(text)' is not a valid resource group name (1-90 letters, digits, '-', '_', '.', '(' or ')', not ending in '.')"
                ))
        }
        return .success(id)
    }

    public struct ShapeError: Error, Sendable { public var message: String }
}

/// Name rules shared by templates, run outputs and resource groups.
public enum ResourceNames {
    /// `^[A-Za-z0-9-_.]{1,64}$`: template, run output and trigger names.
    public static func isValidTemplateName(_ s: String) -> Bool {
        (1...64).contains(s.count)
            && s.allSatisfy { c in
                c.isASCII && (c.isLetter || c.isNumber || c == "-" || c == "_" || c == ".")
            }
    }

    public static func isValidResourceGroup(_ s: String) -> Bool {
        guard (1...90).contains(s.count), !s.hasSuffix(".") else { return false }
        return s.allSatisfy { c in c.isLetter || c.isNumber || "-_.()".contains(c) }
    }

    /// Gallery image versions: `x.y.z`, each part a 32-bit non-negative integer.
    public static func isValidGalleryVersion(_ s: String) -> Bool {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 3
            && parts.allSatisfy { p in !p.isEmpty && p.count <= 10 && p.allSatisfy(\.isASCII) && Int32(p) != nil && !p.hasPrefix("-") && !p.hasPrefix("+") }
    }
}
