import Foundation
import KilnCore
import KilnGit
import KilnTemplates

/// A template as the repository wants it at a commit.
public struct DesiredTemplate: Sendable {
    public var loaded: LoadedTemplate
    /// The file it came from, repository-relative.
    public var file: String
    /// Repository files the template references (scriptUri/sourceUri), path → `git:<blob id>`.
    public var referencedFiles: [String: String]
    /// The content hash over the template and those files: what decides "changed".
    public var contentHash: String

    public var id: String { loaded.resourceId.description }
}

/// A template file that does not load, with its diagnostics (path, line, code).
public struct InvalidTemplateFile: Sendable {
    public var file: String
    public var diagnostics: [Diagnostic]
}

/// Everything the repository declares at one commit.
public struct DesiredState: Sendable {
    public var commit: ObjectID
    public var config: RepositoryConfig
    public var templates: [DesiredTemplate]
    public var invalid: [InvalidTemplateFile]
    public var galleries: [GalleryImageDefinition]
}

/// Reads the desired state from a commit's tree, without a work tree.
public enum DesiredStateReader {
    public static func read(_ repo: GitRepository, at commit: ObjectID) async throws(GitError) -> DesiredState {
        let files = try await repo.files(at: commit)
        let byPath = Dictionary(files.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        var config = RepositoryConfig()
        var configDiagnostics: [Diagnostic] = []
        for name in ["kiln.yaml", "kiln.yml"] {
            if let f = byPath[name] {
                let loaded = TemplateLoader.load(text: String(decoding: try await repo.blob(f.blob), as: UTF8.self), path: name)
                if let c = loaded.repositoryConfig { config = c }
                configDiagnostics = loaded.errors
                break
            }
        }
        var options = LoadOptions()
        if let s = config.subscription { options.scope.subscriptionId = s }
        if let g = config.resourceGroup { options.scope.resourceGroup = g }
        if let l = config.location { options.scope.location = l }

        let templatesRoot = config.templatesPath.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        let galleriesRoot = config.galleriesPath.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        var state = DesiredState(commit: commit, config: config, templates: [], invalid: [], galleries: [])
        if !configDiagnostics.isEmpty { state.invalid.append(InvalidTemplateFile(file: "kiln.yaml", diagnostics: configDiagnostics)) }

        for f in files.sorted(by: { $0.path < $1.path }) where TemplateLoader.format(forPath: f.path) != nil {
            let under = { (root: String) in root.isEmpty || f.path.hasPrefix(root + "/") }
            if under(galleriesRoot) {
                let loaded = TemplateLoader.load(text: String(decoding: try await repo.blob(f.blob), as: UTF8.self), path: f.path, options: options)
                state.galleries += loaded.galleryDefinitions
                if !loaded.isValid { state.invalid.append(InvalidTemplateFile(file: f.path, diagnostics: loaded.errors)) }
                continue
            }
            guard under(templatesRoot), !TemplateLoader.isParametersFileName(f.path) else { continue }
            var parameters: (path: String, text: String)?
            let sibling = TemplateLoader.siblingParametersPath(for: f.path)
            if let p = byPath[sibling] { parameters = (sibling, String(decoding: try await repo.blob(p.blob), as: UTF8.self)) }
            let loaded = TemplateLoader.load(text: String(decoding: try await repo.blob(f.blob), as: UTF8.self), path: f.path,
                                             options: options, parameters: parameters)
            guard loaded.isValid else {
                state.invalid.append(InvalidTemplateFile(file: f.path, diagnostics: loaded.errors))
                continue
            }
            for t in loaded.templates {
                var refs: [String: String] = [:]
                for r in ArtifactReference.all(in: t.template) {
                    guard case .success(.relative) = ArtifactFetcher.classify(r.reference),
                          let path = resolve(r.reference, from: f.path, in: byPath) else { continue }
                    refs[path] = "git:\(byPath[path]!.blob.hex)"
                }
                state.templates.append(DesiredTemplate(loaded: t, file: f.path, referencedFiles: refs,
                                                       contentHash: ContentHash.of(t.template, referencedFiles: refs)))
            }
        }
        return state
    }

    /// A relative reference, looked up next to the template file, then from the repository root.
    static func resolve(_ reference: String, from file: String, in tree: [String: TreeFile]) -> String? {
        let dir = (file as NSString).deletingLastPathComponent
        for base in [dir, ""] {
            let joined = base.isEmpty ? reference : base + "/" + reference
            if let p = ArtifactFetcher.normalizedRelative(joined), tree[p] != nil { return p }
        }
        return nil
    }
}

/// Relative artifacts of a template from a repository, read at the commit the template came from.
public struct CommitArtifactSource: RelativeArtifactSource {
    public let repo: GitRepository
    public let commit: ObjectID
    /// The template file's directory, then the repository root.
    public let roots: [String]

    public init(repo: GitRepository, commit: ObjectID, templateFile: String) {
        self.repo = repo
        self.commit = commit
        let dir = (templateFile as NSString).deletingLastPathComponent
        roots = dir.isEmpty ? [""] : [dir, ""]
    }

    public func read(_ path: String) async throws -> Data? {
        for root in roots {
            guard let p = ArtifactFetcher.normalizedRelative(root.isEmpty ? path : root + "/" + path) else { continue }
            if let d = try await repo.file(p, at: commit) { return d }
        }
        return nil
    }

    public var description: String { "the repository at \(commit.short)" }
}
