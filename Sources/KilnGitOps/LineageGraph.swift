// Which templates of a repository build on which, for build order, rebuilds and cycle errors.
import Foundation
import KilnTemplates

/// What a template publishes and what its source builds on, as lineage keys (lower-cased resource ids: a
/// gallery image definition, a managed image). Computed once per template, when it is loaded.
public struct LineageLinks: Sendable, Hashable {
    /// The gallery image definitions (SharedImage) and managed images the template publishes.
    public var produces: [String]
    /// The published image its source names: a gallery image definition (for a version id) or a managed
    /// image. Nil for a platform image.
    public var consumes: String?
    /// Whether the source moves when its producer publishes: a definition's `latest`, or a managed image
    /// (replaced in place). False for a source pinned to one gallery version: that orders builds but never
    /// asks for a rebuild.
    public var follows: Bool

    public init(_ t: ImageTemplate) {
        produces = t.properties.distribute.compactMap { d in
            switch d {
            case .sharedImage(let s): return Self.definition(s.galleryImageId)
            case .managedImage(let m): return m.imageId.lowercased()
            case .vhd: return nil
            }
        }
        switch t.properties.source {
        case .sharedImageVersion(let s):
            consumes = Self.definition(s.imageVersionId)
            follows = s.imageVersionId.lowercased().hasSuffix("/versions/latest")
        case .managedImage(let m):
            consumes = m.imageId.lowercased()
            follows = true
        case .platformImage:
            consumes = nil
            follows = false
        }
    }

    /// A gallery image (version) id without its `/versions/…`, lower-cased.
    static func definition(_ id: String) -> String {
        let lower = id.lowercased()
        if let r = lower.range(of: "/versions/") { return String(lower[..<r.lowerBound]) }
        return lower
    }
}

/// Producer → consumer edges among the templates of one commit: a template whose source is an image another
/// template publishes builds after it, and (when its source follows the producer) is rebuilt after it. Pure,
/// over indices into the list it was made from.
struct LineageGraph {
    /// For each template, the templates that publish its source (several may publish one definition). A
    /// template that consumes what it publishes itself has no edge to itself: that is an image built on its
    /// own previous version, neither an order nor a reason to rebuild.
    let producers: [[Int]]
    /// For each template, whether its source follows those producers (`LineageLinks.follows`).
    let follows: [Bool]

    init(_ links: [LineageLinks]) {
        var byKey: [String: [Int]] = [:]
        for (n, l) in links.enumerated() {
            for key in Set(l.produces) { byKey[key, default: []].append(n) }
        }
        producers = links.enumerated().map { n, l in l.consumes.map { (byKey[$0] ?? []).filter { $0 != n } } ?? [] }
        follows = links.map(\.follows)
    }

    var count: Int { producers.count }

    /// Every template, each after its producers, otherwise in the original order. Members of a cycle keep
    /// the original order among themselves (a cycle is reported by `cycles()`).
    func order() -> [Int] {
        var placed = [Bool](repeating: false, count: count), visiting = placed, out: [Int] = []
        out.reserveCapacity(count)
        func place(_ n: Int) {
            guard !placed[n], !visiting[n] else { return }
            visiting[n] = true
            for p in producers[n] { place(p) }
            visiting[n] = false
            placed[n] = true
            out.append(n)
        }
        for n in 0..<count { place(n) }
        return out
    }

    /// The cycles: each strongly connected component of more than one template (Tarjan), its members in
    /// the order the loop runs, consumer to producer.
    func cycles() -> [[Int]] {
        var index = [Int?](repeating: nil, count: count), low = [Int](repeating: 0, count: count)
        var onStack = [Bool](repeating: false, count: count), stack: [Int] = [], next = 0
        var components: [[Int]] = []
        func connect(_ v: Int) {
            index[v] = next
            low[v] = next
            next += 1
            stack.append(v)
            onStack[v] = true
            for w in producers[v] {
                if index[w] == nil {
                    connect(w)
                    low[v] = min(low[v], low[w])
                } else if onStack[w] {
                    low[v] = min(low[v], index[w]!)
                }
            }
            guard low[v] == index[v] else { return }
            var component: [Int] = []
            while let w = stack.popLast() {
                onStack[w] = false
                component.append(w)
                if w == v { break }
            }
            if component.count > 1 { components.append(loop(through: Set(component))) }
        }
        for v in 0..<count where index[v] == nil { connect(v) }
        return components.sorted { $0.min()! < $1.min()! }
    }

    /// The members of a strongly connected component as one walk, consumer → producer, from the lowest index.
    private func loop(through members: Set<Int>) -> [Int] {
        var walk = [members.min()!], seen: Set<Int> = [walk[0]]
        while let next = producers[walk.last!].first(where: { members.contains($0) && !seen.contains($0) }) {
            walk.append(next)
            seen.insert(next)
        }
        return walk
    }
}
