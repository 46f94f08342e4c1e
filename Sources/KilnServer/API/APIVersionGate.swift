import KilnTemplates

/// Which api-versions the REST API serves: every published AIB version Kiln reads (the api-version of a PUT
/// decides its validation rules, as a file's `apiVersion` does).
public enum APIVersionGate {
    public static let supported: [APIVersion] = APIVersion.published

    public static var supportedList: String { supported.map(\.description).joined(separator: ", ") }

    /// The version a request asked for, or the ARM error for a missing, malformed or unknown one.
    public static func check(_ query: String?) -> Result<APIVersion, ARMError> {
        guard let query, !query.isEmpty else { return .failure(.missingAPIVersion()) }
        guard let version = APIVersion(query) else { return .failure(.invalidAPIVersion(query)) }
        guard supported.contains(version) else { return .failure(.unsupportedAPIVersion(version)) }
        return .success(version)
    }
}
