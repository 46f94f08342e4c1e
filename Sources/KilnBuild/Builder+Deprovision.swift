// Deprovisioning and power-off of the build VM after the customizers, before capture.
import Foundation
import KilnStore
import KilnSystem
import KilnTemplates
import Logging

extension Builder {
    /// AIB's Linux default: `waagent -force -deprovision+user` where waagent exists; otherwise Kiln's
    /// equivalent (cloud-init clean, machine-id truncated, SSH host keys and the build user removed).
    public static let defaultDeprovisioningScript = """
        #!/bin/sh
        # Kiln's default deprovisioning (AIB: /tmp/DeprovisioningScript.sh; a customizer may overwrite it).
        if command -v waagent >/dev/null 2>&1; then
          waagent -force -deprovision+user && export HISTSIZE=0 && sync
          exit 0
        fi
        if command -v cloud-init >/dev/null 2>&1; then cloud-init clean --logs || true; fi
        truncate -s 0 /etc/machine-id
        rm -f /var/lib/dbus/machine-id /var/lib/kiln/instance-id
        rm -f /etc/ssh/ssh_host_*
        rm -rf /tmp/kiln-* /var/tmp/*
        rm -f /root/.bash_history
        journalctl --rotate >/dev/null 2>&1 && journalctl --vacuum-time=1s >/dev/null 2>&1 || true
        sync

        """

    /// Runs after the last SSH session, under PID 1: deprovisioning removes the SSH host keys, so no new
    /// connection could be made after it. Output goes to the serial console, which the host reads back.
    static func finalizeScript(user: String) -> String {
        """
        #!/bin/sh
        exec > /dev/ttyS0 2>&1
        sleep 1
        echo "kiln-deprovision: start"
        sh /tmp/DeprovisioningScript.sh
        status=$?
        echo "kiln-deprovision: status $status"
        rm -f /etc/sudoers.d/90-kiln-\(user) /tmp/DeprovisioningScript.sh /tmp/kiln-finalize.sh
        userdel -f -r \(user) >/dev/null 2>&1 || true
        sync
        systemctl poweroff || poweroff -f

        """
    }

    func deprovisionAndShutdown(vm: VirtualMachine, ssh: SSHClient, log: BuildLog) async throws {
        log.marker("Deprovisioning")
        let custom = try await ssh.run("test -s /tmp/DeprovisioningScript.sh", timeout: .seconds(60)).status == 0
        if !custom {
            let local = (request.workDirectory as NSString).appendingPathComponent("DeprovisioningScript.sh")
            try Self.defaultDeprovisioningScript.write(toFile: local, atomically: true, encoding: .utf8)
            try await upload(local, to: "/tmp/DeprovisioningScript.sh", ssh: ssh)
        } else {
            log.line("using the /tmp/DeprovisioningScript.sh a customizer wrote")
        }
        let finalize = (request.workDirectory as NSString).appendingPathComponent("kiln-finalize.sh")
        try Self.finalizeScript(user: request.user).write(toFile: finalize, atomically: true, encoding: .utf8)
        try await upload(finalize, to: "/tmp/kiln-finalize.sh", ssh: ssh)
        log.line("deprovisioning, removing the build user '\(request.user)' and powering off")
        let r = try await ssh.run("sudo systemd-run --quiet --no-block --unit=kiln-finalize sh /tmp/kiln-finalize.sh", timeout: .seconds(60))
        guard r.status == 0 else { throw BuildError.io("cannot start deprovisioning: \(r.combined)") }
        let off = await vm.waitForExit(timeout: .seconds(300))
        // The deprovisioning output, from the serial console.
        // Decoded leniently: firmware and boot loaders write bytes that are not UTF-8.
        let console = String(decoding: FileManager.default.contents(atPath: vm.configuration.serialLog) ?? Data(), as: UTF8.self)
        var inside = false
        var status: Int?
        // "\r\n" is one Character in Swift: drop the carriage returns before splitting into lines.
        for raw in console.replacingOccurrences(of: "\r", with: "").split(separator: "\n", omittingEmptySubsequences: false) {
            let line = String(raw)
            if line.contains("kiln-deprovision: start") { inside = true; continue }
            if let r = line.range(of: "kiln-deprovision: status ") {
                status = Int(line[r.upperBound...].trimmingCharacters(in: .whitespaces))
                inside = false
                continue
            }
            if inside { log.line("    \(line)") }
        }
        if !off {
            log.line("the VM did not power off in 300 s; stopping it")
            await vm.stop(grace: .seconds(30))
        } else {
            log.line("the VM powered off")
        }
        guard let status else { throw BuildError.io("deprovisioning did not report a result; see the serial console") }
        guard status == 0 else { throw BuildError.io("deprovisioning (/tmp/DeprovisioningScript.sh) failed with exit code \(status); see customization.log") }
    }
}
