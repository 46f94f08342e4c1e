// Test support: template files as a user writes them.

/// Template JSON text for tests.
public enum TemplateText {
    /// A manual-run template with one customizer step (JSON text), the step alone on line 7 so that tests can
    /// check the line a diagnostic names.
    public static func oneStep(_ name: String, _ step: String) -> String {
        """
        {
          "type": "Microsoft.VirtualMachineImages/imageTemplates", "apiVersion": "2025-10-01",
          "name": "\(name)", "location": "westeurope", "identity": {"type": "None"}, "tags": {"kiln.run": "manual"},
          "properties": {
            "source": {"type": "PlatformImage", "publisher": "Debian", "offer": "debian-12", "sku": "12", "version": "latest"},
            "customize": [
              \(step)
            ],
            "distribute": [{"type": "VHD", "runOutputName": "\(name)-vhd"}]
          }
        }
        """
    }
}
