import Foundation

/// The context functions, synthesized from `DeploymentScope`: what `resourceGroup()`, `subscription()`,
/// `tenant()`, `deployer()`, `environment()` and `deployment()` return in Azure, and the resource-id builders.
enum ARMContext {
    /// The context function `name` (lower case, one of resourceGroup, subscription, tenant, deployer, environment,
    /// deployment).
    static func value(of name: String, _ s: DeploymentScope) -> SourceNode {
        switch name {
        case "resourcegroup": return resourceGroup(s)
        case "subscription": return subscription(s)
        case "tenant": return tenant(s)
        case "deployer": return deployer(s)
        case "environment": return environment
        default: return deployment(s)
        }
    }

    static func resourceGroup(_ s: DeploymentScope) -> SourceNode {
        .object([
            ("id", .string("/subscriptions/\(s.subscriptionId)/resourceGroups/\(s.resourceGroup)")), ("name", .string(s.resourceGroup)),
            ("type", .string("Microsoft.Resources/resourceGroups")), ("location", .string(s.location)), ("tags", .object([])),
            ("properties", .object([("provisioningState", .string("Succeeded"))]))
        ])
    }

    static func subscription(_ s: DeploymentScope) -> SourceNode {
        .object([
            ("id", .string("/subscriptions/\(s.subscriptionId)")), ("subscriptionId", .string(s.subscriptionId)), ("tenantId", .string(s.tenantId)),
            ("displayName", .string(s.subscriptionId))
        ])
    }

    static func tenant(_ s: DeploymentScope) -> SourceNode {
        .object([
            ("countryCode", .string("")), ("displayName", .string(s.tenantId)), ("id", .string("/tenants/\(s.tenantId)")), ("tenantId", .string(s.tenantId))
        ])
    }

    static func deployer(_ s: DeploymentScope) -> SourceNode {
        .object([
            ("objectId", .string("00000000-0000-0000-0000-000000000000")), ("tenantId", .string(s.tenantId)),
            ("userPrincipalName", .string(ProcessInfo.processInfo.userName))
        ])
    }

    /// `deployment()`: the name, and `templateLink` only when the template has a link, as for a local file in ARM.
    static func deployment(_ s: DeploymentScope) -> SourceNode {
        var properties: [(String, SourceNode)] = [("template", .object([("contentVersion", .string("1.0.0.0"))]))]
        if let link = s.templateLink { properties.append(("templateLink", .object([("uri", .string(link))]))) }
        return .object([("name", .string(s.deploymentName ?? "kiln")), ("location", .string(s.location)), ("properties", .object(properties))])
    }

    /// Azure's public cloud, as `environment()` returns it there.
    static let environment: SourceNode = .object([
        ("name", .string("AzureCloud")), ("gallery", .string("https://gallery.azure.com/")), ("graph", .string("https://graph.windows.net/")),
        ("portal", .string("https://portal.azure.com")), ("graphAudience", .string("https://graph.windows.net/")),
        ("activeDirectoryDataLake", .string("https://datalake.azure.net/")), ("batch", .string("https://batch.core.windows.net/")),
        ("media", .string("https://rest.media.azure.net")), ("sqlManagement", .string("https://management.core.windows.net:8443/")),
        ("vmImageAliasDoc", .string("https://raw.githubusercontent.com/Azure/azure-rest-api-specs/main/arm-compute/quickstart-templates/aliases.json")),
        ("resourceManager", .string("https://management.azure.com/")),
        (
            "authentication",
            .object([
                ("loginEndpoint", .string("https://login.microsoftonline.com/")),
                ("audiences", .array([.string("https://management.core.windows.net/"), .string("https://management.azure.com/")])),
                ("tenant", .string("common")), ("identityProvider", .string("AAD"))
            ])
        ),
        (
            "suffixes",
            .object([
                ("acrLoginServer", .string(".azurecr.io")), ("azureDatalakeAnalyticsCatalogAndJob", .string("azuredatalakeanalytics.net")),
                ("azureDatalakeStoreFileSystem", .string("azuredatalakestore.net")), ("azureFrontDoorEndpointSuffix", .string("azurefd.net")),
                ("keyvaultDns", .string(".vault.azure.net")), ("sqlServerHostname", .string(".database.windows.net")),
                ("storage", .string("core.windows.net"))
            ])
        )
    ])

    /// `resourceId([sub], [rg], type, names…)` and its siblings: one name per type segment after the namespace.
    static func resourceId(_ fn: String, _ name: String, _ args: [String], scope: DeploymentScope) throws -> String {
        func fail(_ m: String) -> ARMEvaluator.EvalError { ARMEvaluator.EvalError(message: "\(name)(): \(m)") }
        func typed(_ args: [String], leading: Int) throws -> (prefix: [String], path: String) {
            guard let t = args.firstIndex(where: { !$0.hasPrefix("/") && $0.contains("/") && $0.contains(".") }), t <= leading else {
                throw fail("needs a resource type such as 'Microsoft.Compute/images'")
            }
            let typeParts = args[t].split(separator: "/").map(String.init)
            let names = Array(args[(t + 1)...])
            guard typeParts.count >= 2, names.count == typeParts.count - 1 else {
                throw fail("type '\(args[t])' needs \(max(typeParts.count - 1, 1)) name\(typeParts.count == 2 ? "" : "s"), found \(names.count)")
            }
            var path = "providers/\(typeParts[0])"
            for (t, n) in zip(typeParts.dropFirst(), names) { path += "/\(t)/\(n)" }
            return (Array(args[..<t]), path)
        }
        switch fn {
        case "resourceid":
            let (prefix, path) = try typed(args, leading: 2)
            let sub = prefix.count == 2 ? prefix[0] : scope.subscriptionId
            let rg = prefix.last ?? scope.resourceGroup
            return "/subscriptions/\(sub)/resourceGroups/\(rg)/\(path)"
        case "subscriptionresourceid":
            let (prefix, path) = try typed(args, leading: 1)
            return "/subscriptions/\(prefix.first ?? scope.subscriptionId)/\(path)"
        case "tenantresourceid":
            let (_, path) = try typed(args, leading: 0)
            return "/\(path)"
        case "managementgroupresourceid":
            let (prefix, path) = try typed(args, leading: 1)
            guard let group = prefix.first else { throw fail("needs the management group's id before the type (Kiln deploys to a resource group)") }
            return "/providers/Microsoft.Management/managementGroups/\(group)/\(path)"
        default:  // extensionresourceid
            guard let base = args.first, base.hasPrefix("/") else { throw fail("needs the id of the resource it extends first") }
            let (_, path) = try typed(Array(args.dropFirst()), leading: 0)
            return base + "/" + path
        }
    }
}
