import Foundation
import KilnTemplates

/// Loading a deployment template (parse, parameters file, evaluation, decoding), repeated, per file: the median
/// and the 95th percentile next to issue 17's anchor of 50 ms.
func armEvaluation(_ files: [String], rounds: Int = 200) {
    for file in files {
        var times: [Double] = []
        var templates = 0
        for _ in 0..<rounds {
            let start = ContinuousClock.now
            let loaded = TemplateLoader.loadFile(file)
            let d = ContinuousClock.now - start
            times.append(Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15)
            templates = loaded.templates.count
            if !loaded.isValid {
                print("\(file): not valid: \(loaded.errors.map(\.description).joined(separator: "; "))")
                return
            }
        }
        times.sort()
        let median = times[times.count / 2], p95 = times[times.count * 95 / 100]
        print(
            String(
                format: "%@: %d template(s); load+evaluate median %.2f ms, p95 %.2f ms over %d rounds (anchor: well under 50 ms)",
                (file as NSString).lastPathComponent, templates, median, p95, rounds))
    }
}
