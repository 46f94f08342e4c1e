// Decodes `properties.customize` and `properties.validate`: the customizer and in-VM validator lists.
import Foundation

extension TemplateDecoder {
    func decodeCustomizers(_ p: ObjectReader) -> [Customizer]? {
        guard let items = p.array("customize", code: .badCustomizerType) else {
            return p.value("customize") == nil ? [] : nil
        }
        var out: [Customizer] = []
        var ok = true
        for (n, path) in items {
            if let c = decodeCustomizer(n, path: path) { out.append(c) } else { ok = false }
        }
        return ok ? out : nil
    }

    private func decodeCustomizer(_ n: SourceNode, path: JSONPath) -> Customizer? {
        guard let r = ObjectReader(n, path: path, ctx: ctx, code: .badCustomizerType) else { return nil }
        defer { r.finish() }
        guard let typeText = r.string("type", code: .badCustomizerType, required: true) else { r.skipUnknownCheck = true; return nil }
        guard let kind = Customizer.Kind.matching(typeText) else {
            r.skipUnknownCheck = true
            ctx.error(
                .badCustomizerType, "unknown customizer type '\(typeText)'; expected \(Customizer.Kind.spellings)", path / "type",
                r.value("type")!.node.position)
            return nil
        }
        let name = r.string("name", code: .badCustomizerType)
        switch kind {
        case .shell:
            return shellScript(r, name: name, noScript: .noCustomizerScript, bad: .badCustomizerType).map(Customizer.shell)
        case .powerShell:
            return powerShellScript(r, name: name, noScript: .noCustomizerScript, bad: .badCustomizerType).map(Customizer.powerShell)
        case .file:
            return fileCopy(r, name: name, noSource: .noCustomizerScript, bad: .badCustomizerType).map(Customizer.file)
        case .windowsRestart:
            let command = r.string("restartCommand") ?? ""
            let check = r.string("restartCheckCommand") ?? ""
            var timeout = r.string("restartTimeout") ?? ""
            if timeout.isEmpty { timeout = WindowsRestart.defaultRestartTimeout }
            if let (tn, tp) = r.value("restartTimeout"), !TemplateDuration.isValidGoDuration(timeout), !ctx.isSuppressed(tn) {
                ctx.error(.badCustomizerType, "restartTimeout '\(timeout)' is not a duration; use a number and a unit, such as 5m, 10m or 2h", tp, tn.position)
                return nil
            }
            return .windowsRestart(
                WindowsRestart(
                    name: name, restartCommand: command.isEmpty ? WindowsRestart.defaultRestartCommand : command,
                    restartCheckCommand: check, restartTimeout: timeout))
        case .windowsUpdate:
            let criteria = r.string("searchCriteria")
            let filters = r.stringArray("filters") ?? []
            var limit = r.int("updateLimit", range: 0...Int(Int32.max)) ?? 0
            if limit == 0 { limit = WindowsUpdate.defaultUpdateLimit }
            return .windowsUpdate(WindowsUpdate(name: name, searchCriteria: (criteria?.isEmpty ?? true) ? nil : criteria, filters: filters, updateLimit: limit))
        }
    }

    func decodeValidation(_ p: ObjectReader) -> Validation? {
        guard let v = p.object("validate", code: .badValidatorType) else {
            return p.value("validate") == nil ? Validation() : nil
        }
        defer { v.finish() }
        var result = Validation()
        result.continueDistributeOnFailure = v.bool("continueDistributeOnFailure") ?? false
        result.sourceValidationOnly = v.bool("sourceValidationOnly") ?? false
        guard let items = v.array("inVMValidations", code: .badValidatorType) else {
            if v.value("inVMValidations") != nil { return nil }
            if result.sourceValidationOnly {
                ctx.error(
                    .badValidatorType, "sourceValidationOnly needs at least one entry in inVMValidations", v.path / "sourceValidationOnly",
                    v.value("sourceValidationOnly")!.node.position)
                return nil
            }
            return result
        }
        var ok = true
        for (n, path) in items {
            guard let r = ObjectReader(n, path: path, ctx: ctx, code: .badValidatorType) else { ok = false; continue }
            defer { r.finish() }
            guard let typeText = r.string("type", code: .badValidatorType, required: true) else { r.skipUnknownCheck = true; ok = false; continue }
            guard let kind = InVMValidation.Kind.matching(typeText) else {
                r.skipUnknownCheck = true
                ctx.error(
                    .badValidatorType, "unknown validator type '\(typeText)'; expected \(InVMValidation.Kind.spellings)", path / "type",
                    r.value("type")!.node.position)
                ok = false
                continue
            }
            let name = r.string("name", code: .badValidatorType)
            let decoded: InVMValidation?
            switch kind {
            case .shell: decoded = shellScript(r, name: name, noScript: .noValidatorScript, bad: .badValidatorType).map(InVMValidation.shell)
            case .powerShell: decoded = powerShellScript(r, name: name, noScript: .noValidatorScript, bad: .badValidatorType).map(InVMValidation.powerShell)
            case .file: decoded = fileCopy(r, name: name, noSource: .noValidatorScript, bad: .badValidatorType).map(InVMValidation.file)
            }
            if let decoded { result.inVMValidations.append(decoded) } else { ok = false }
        }
        if result.sourceValidationOnly && result.inVMValidations.isEmpty && ok {
            ctx.error(
                .badValidatorType, "sourceValidationOnly needs at least one entry in inVMValidations", v.path / "sourceValidationOnly",
                v.value("sourceValidationOnly")!.node.position)
            return nil
        }
        return ok ? result : nil
    }
}

/// Durations as Packer (Go's time.ParseDuration) reads them: `5m`, `1h30m`, `90s`.
public enum TemplateDuration {
    public static func isValidGoDuration(_ s: String) -> Bool { seconds(s) != nil }

    public static func seconds(_ s: String) -> Double? {
        var rest = Substring(s)
        guard !rest.isEmpty else { return nil }
        if rest == "0" { return 0 }
        var total = 0.0
        while !rest.isEmpty {
            let num = rest.prefix { $0.isNumber || $0 == "." }
            guard !num.isEmpty, let value = Double(num) else { return nil }
            rest = rest.dropFirst(num.count)
            let unit = rest.prefix { $0.isLetter || $0 == "µ" }
            rest = rest.dropFirst(unit.count)
            let factor: Double
            switch unit {
            case "ns": factor = 1e-9
            case "us", "µs": factor = 1e-6
            case "ms": factor = 1e-3
            case "s": factor = 1
            case "m": factor = 60
            case "h": factor = 3600
            default: return nil
            }
            total += value * factor
        }
        return total
    }
}
