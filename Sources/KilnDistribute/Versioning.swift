import KilnTemplates

/// Picks a new gallery image version (AIB's `versioning`).
public enum GalleryVersioning {
    public struct VersioningError: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// - `explicit`: the version named by `.../versions/x.y.z`; it must not exist.
    /// - Latest: the next patch within `major` (or within the highest major when unset, -1), after the highest
    ///   minor: with 1.2.0 and 2.1.0, major 1 → 1.2.1, unset → 2.1.1. No versions yet → `major`.0.0 or 1.0.0.
    /// - Source: the source image's version (x.y.z).
    public static func choose(explicit: ImageVersion?, versioning: Versioning?, existing: [ImageVersion], sourceVersion: String?) throws(VersioningError)
        -> ImageVersion
    {
        let chosen: ImageVersion
        if let explicit {
            chosen = explicit
        } else {
            let v = versioning ?? Versioning(scheme: .latest)
            switch v.scheme {
            case .latest:
                let pool = v.major >= 0 ? existing.filter { $0.major == v.major } : existing
                if let top = pool.max() {
                    chosen = ImageVersion(top.major, top.minor, top.patch + 1)
                } else {
                    chosen = ImageVersion(v.major >= 0 ? v.major : 1, 0, 0)
                }
            case .source:
                guard let s = sourceVersion else {
                    throw VersioningError(
                        description:
                            "versioning scheme Source needs a source image with a version (a PlatformImage or a gallery image version), and this source has none"
                    )
                }
                guard let parsed = ImageVersion(s) else {
                    throw VersioningError(description: "versioning scheme Source: the source version \(s) is not x.y.z")
                }
                chosen = parsed
            }
        }
        if existing.contains(chosen) {
            throw VersioningError(description: "gallery image version \(chosen) exists already; versions are never overwritten")
        }
        return chosen
    }
}
