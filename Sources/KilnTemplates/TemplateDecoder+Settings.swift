// Decodes the remaining build settings of `properties`: optimize, errorHandling and vmProfile.
import Foundation

extension TemplateDecoder {
    func decodeOptimize(_ p: ObjectReader) -> Optimize? {
        guard let o = p.object("optimize", code: .invalidParameter) else {
            return p.value("optimize") == nil ? Optimize() : nil
        }
        defer { o.finish() }
        var result = Optimize()
        var ok = true
        if let vb = o.object("vmBoot") {
            if let s = vb.enumeration("state", FeatureState.self, required: true) { result.vmBoot.state = s } else { ok = false }
            vb.finish()
        } else if o.value("vmBoot") != nil {
            ok = false
        }
        if let w = o.object("workload") {
            let state = w.enumeration("state", FeatureState.self, required: true)
            let uri = w.string("scriptUri")
            let sum = checksum(w, .invalidParameter)
            if let uri, !uri.isEmpty, !checkURI(uri, w.value("scriptUri")!, .invalidParameter, "scriptUri", checksum: (try? sum.get()) ?? nil) { ok = false }
            w.finish()
            if let state, case .success(let s) = sum {
                if state == .enabled && (uri ?? "").isEmpty {
                    ctx.error(.invalidParameter, "an enabled workload optimization needs a scriptUri", w.path / "scriptUri", w.position)
                    ok = false
                }
                result.workload = .init(state: state, scriptUri: (uri ?? "").isEmpty ? nil : uri, sha256Checksum: s)
            } else {
                ok = false
            }
        } else if o.value("workload") != nil {
            ok = false
        }
        return ok ? result : nil
    }

    func decodeErrorHandling(_ p: ObjectReader) -> ErrorHandling? {
        guard let e = p.object("errorHandling", code: .invalidParameter) else {
            return p.value("errorHandling") == nil ? ErrorHandling() : nil
        }
        defer { e.finish() }
        let c = e.enumeration("onCustomizerError", ErrorHandling.Action.self)
        let v = e.enumeration("onValidationError", ErrorHandling.Action.self)
        if (e.value("onCustomizerError") != nil && c == nil) || (e.value("onValidationError") != nil && v == nil) { return nil }
        return ErrorHandling(onCustomizerError: c ?? .cleanup, onValidationError: v ?? .cleanup)
    }

    func decodeVMProfile(_ p: ObjectReader) -> VMProfile? {
        guard let v = p.object("vmProfile", code: .invalidParameter) else {
            return p.value("vmProfile") == nil ? VMProfile() : nil
        }
        defer { v.finish() }
        var ok = true
        var profile = VMProfile()
        profile.vmSize = v.string("vmSize") ?? ""
        if let (n, _) = v.value("osDiskSizeGB") {
            if let size = v.int("osDiskSizeGB", range: 0...4095) { profile.osDiskSizeGB = size } else if !ctx.isSuppressed(n) { ok = false }
        }
        if let ids = v.stringArray("userAssignedIdentities") {
            for (i, id) in ids.enumerated() {
                let at = (v.value("userAssignedIdentities")!.node.elements![i], v.path / "userAssignedIdentities" / i)
                if !checkShape(id, at, ResourceID.userAssignedIdentity, .invalidParameter, "user-assigned identity") { ok = false }
            }
            profile.userAssignedIdentities = ids
        } else if v.value("userAssignedIdentities") != nil {
            ok = false
        }
        if let net = v.object("vnetConfig") {
            var cfg = VNetConfig()
            cfg.subnetId = net.string("subnetId").flatMap { $0.isEmpty ? nil : $0 }
            cfg.containerInstanceSubnetId = net.string("containerInstanceSubnetId").flatMap { $0.isEmpty ? nil : $0 }
            cfg.proxyVmSize = net.string("proxyVmSize").flatMap { $0.isEmpty ? nil : $0 }
            if let s = cfg.subnetId, !checkShape(s, net.value("subnetId")!, ResourceID.subnet, .invalidParameter, "subnetId") { ok = false }
            if let s = cfg.containerInstanceSubnetId,
                !checkShape(s, net.value("containerInstanceSubnetId")!, ResourceID.subnet, .invalidParameter, "containerInstanceSubnetId")
            {
                ok = false
            }
            if cfg.containerInstanceSubnetId != nil && cfg.subnetId == nil {
                ctx.error(.invalidParameter, "containerInstanceSubnetId needs subnetId", net.path / "containerInstanceSubnetId", net.position)
                ok = false
            }
            net.finish()
            profile.vnetConfig = cfg
        } else if v.value("vnetConfig") != nil {
            ok = false
        }
        return ok ? profile : nil
    }
}
