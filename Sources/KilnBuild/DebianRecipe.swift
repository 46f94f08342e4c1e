import Foundation

/// What goes into Kiln's Debian 12 base image, as data: the package set and every file the bootstrap
/// writes into the root filesystem. The bootstrap cache key hashes all of it, so any change here
/// produces a new image instead of silently reusing an old one.
public enum DebianRecipe {
    /// Bumped when the steps (not the data below) change meaning.
    public static let revision = "debian-12-r5"
    public static let suite = "bookworm"
    public static let defaultMirror = "http://deb.debian.org/debian"

    /// debootstrap --variant=minbase plus these.
    public static let packages = [
        "linux-image-cloud-amd64",  // NVMe, ext4 built in: boots without an initramfs
        "systemd-sysv", "udev", "dbus", "kmod",
        "systemd-resolved",  // DNS from DHCP without ifupdown/dhclient
        "openssh-server", "sudo",
        "cloud-guest-utils",  // growpart, for disks grown to osDiskSizeGB
        "ca-certificates"
    ]

    /// Kernel command line. No initramfs; quiet console; entropy from the CPU so sshd starts at once.
    public static let kernelArguments =
        "rw rootwait console=ttyS0,115200 quiet loglevel=3 systemd.show_status=false mitigations=off random.trust_cpu=on nowatchdog"

    /// The root partition's PARTUUID in each layout (fixed, so one grub.cfg serves both generations).
    public static let mbrDiskSignature = "4b494c4e"
    public static let gen1RootPartUUID = "4b494c4e-01"
    public static let gen2RootPartUUID = "4b494c4e-726f-6f74-8000-000000000001"

    /// Units a build VM does not need; masked.
    public static let maskedUnits = [
        "apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "e2scrub_all.timer", "e2scrub_reap.service",
        "fstrim.timer", "systemd-pstore.service", "systemd-networkd-wait-online.service", "getty@tty1.service"
    ]
    public static let enabledUnits = ["kiln-firstboot.service", "kiln-growroot.service", "systemd-networkd.service"]

    /// Files written into the root filesystem: path → (mode, content).
    public static let files: [(path: String, mode: Int, content: String)] = [
        ("etc/hostname", 0o644, "debian\n"),
        ("etc/fstab", 0o644, "# The kernel mounts the root file system read-write (root=PARTUUID=..., rw); nothing else to mount.\n"),
        (
            "etc/systemd/network/80-kiln-dhcp.network", 0o644,
            """
            [Match]
            Name=en* eth*

            [Network]
            DHCP=ipv4
            LinkLocalAddressing=no
            IPv6AcceptRA=no

            [DHCPv4]
            UseDomains=true

            """
        ),
        (
            "etc/ssh/sshd_config.d/10-kiln.conf", 0o644,
            """
            # Kiln: one fast host key (generated at first boot), keys only, no reverse DNS.
            HostKey /etc/ssh/ssh_host_ed25519_key
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            UseDNS no

            """
        ),
        (
            "boot/grub/grub.cfg", 0o644,
            """
            set timeout=0
            set timeout_style=hidden
            if [ "$grub_platform" = "efi" ]; then
              linux /vmlinuz root=PARTUUID=\(gen2RootPartUUID) \(kernelArguments)
            else
              linux /vmlinuz root=PARTUUID=\(gen1RootPartUUID) \(kernelArguments)
            fi
            boot

            """
        ),
        ("usr/local/sbin/kiln-firstboot", 0o755, firstBootScript),
        ("usr/local/sbin/kiln-growroot", 0o755, growRootScript),
        (
            "etc/systemd/system/kiln-firstboot.service", 0o644,
            """
            [Unit]
            Description=Kiln first boot: SSH host key and the NoCloud seed (user, key, sudo, hostname)
            DefaultDependencies=no
            After=systemd-remount-fs.service
            Before=ssh.service ssh.socket
            ConditionPathExists=!/etc/kiln/no-firstboot

            [Service]
            Type=oneshot
            ExecStart=/usr/local/sbin/kiln-firstboot
            StandardOutput=journal+console

            [Install]
            WantedBy=sysinit.target

            """
        ),
        (
            "etc/systemd/system/ssh.service.d/10-kiln-early.conf", 0o644,
            """
            # Kiln: start sshd as soon as its host key and the build user exist, without waiting for
            # sysinit.target (systemd-resolved alone holds that up for seconds under software emulation).
            # sshd listens on all addresses, so it needs no network configuration to start.
            [Unit]
            DefaultDependencies=no
            After=kiln-firstboot.service systemd-journald.socket systemd-remount-fs.service
            Conflicts=shutdown.target
            Before=shutdown.target

            """
        ),
        (
            "etc/systemd/system/kiln-growroot.service", 0o644,
            """
            [Unit]
            Description=Kiln: grow the root partition and file system to the disk
            After=local-fs.target
            ConditionPathExists=/usr/bin/growpart

            [Service]
            Type=oneshot
            ExecStart=/usr/local/sbin/kiln-growroot

            [Install]
            WantedBy=multi-user.target

            """
        )
    ]

    /// Reads the NoCloud seed (a volume labelled cidata/CIDATA) once per instance-id: creates the user
    /// with passwordless sudo and its authorized keys, sets the hostname. Generates the ed25519 host key
    /// when missing (deprovisioning removes host keys).
    public static let firstBootScript = #"""
        #!/bin/sh
        # Kiln first boot. Reads cloud-init's NoCloud seed (a volume labelled cidata) without cloud-init.
        set -eu
        [ -s /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
        [ -s /etc/machine-id ] || systemd-machine-id-setup >/dev/null 2>&1 || true
        seed=""
        for dev in /dev/nvme*n1 /dev/vd? /dev/sd? /dev/sr?; do
          [ -b "$dev" ] || continue
          case "$(blkid -s LABEL -o value "$dev" 2>/dev/null || true)" in cidata|CIDATA) seed=$dev; break;; esac
        done
        [ -n "$seed" ] || { echo "kiln-firstboot: no cidata seed"; exit 0; }
        # Under /run, not /tmp: this runs before systemd-tmpfiles empties /tmp.
        mnt=/run/kiln-seed
        mkdir -p "$mnt"
        mount -o ro "$seed" "$mnt"
        trap 'umount "$mnt"; rmdir "$mnt"' EXIT
        iid=$(sed -n 's/^instance-id:[[:space:]]*//p' "$mnt/meta-data" | tr -d '"'"'"'')
        host=$(sed -n 's/^local-hostname:[[:space:]]*//p' "$mnt/meta-data" | tr -d '"'"'"'')
        mkdir -p /var/lib/kiln
        if [ -n "$iid" ] && [ "$(cat /var/lib/kiln/instance-id 2>/dev/null || true)" = "$iid" ]; then exit 0; fi
        if [ -n "$host" ]; then echo "$host" > /etc/hostname; hostname "$host"; fi
        # users: the cloud-config subset Kiln writes (name, sudo, ssh_authorized_keys).
        awk '
          /^users:/ { inusers=1; next }
          inusers && /^[^ #-]/ { inusers=0 }
          !inusers { next }
          /^  - name:/ { sub(/^  - name:[ ]*/, ""); print "user " $0; inkeys=0; next }
          /^    ssh_authorized_keys:/ { inkeys=1; next }
          /^    sudo:/ { sub(/^    sudo:[ ]*/, ""); print "sudo " $0; inkeys=0; next }
          inkeys && /^      - / { sub(/^      - /, ""); print "key " $0; next }
          /^    [a-z_]+:/ { inkeys=0 }
        ' "$mnt/user-data" | while read -r kind value; do
          value=$(printf '%s' "$value" | sed 's/^"\(.*\)"$/\1/')
          case "$kind" in
            user) user=$value
                  id "$user" >/dev/null 2>&1 || useradd -m -s /bin/bash "$user"
                  install -d -m 700 -o "$user" -g "$user" "/home/$user/.ssh"
                  : > "/home/$user/.ssh/authorized_keys"
                  chown "$user:$user" "/home/$user/.ssh/authorized_keys"; chmod 600 "/home/$user/.ssh/authorized_keys";;
            key)  printf '%s\n' "$value" >> "/home/$user/.ssh/authorized_keys";;
            sudo) printf '%s %s\n' "$user" "$value" > "/etc/sudoers.d/90-kiln-$user"; chmod 440 "/etc/sudoers.d/90-kiln-$user";;
          esac
        done
        echo "$iid" > /var/lib/kiln/instance-id
        echo "kiln-firstboot: seed $seed applied (instance $iid)"

        """#

    /// Grows the last partition and the root file system when the disk was enlarged (osDiskSizeGB).
    public static let growRootScript = #"""
        #!/bin/sh
        # Kiln: grow the root partition and its ext4 file system to fill the disk.
        set -eu
        src=$(findmnt -n -o SOURCE /)
        case "$src" in
          /dev/nvme*n*p*) disk=${src%p*}; part=${src##*p};;
          /dev/vd*|/dev/sd*) disk=$(echo "$src" | sed 's/[0-9]*$//'); part=$(echo "$src" | sed 's/^.*[^0-9]//');;
          *) exit 0;;
        esac
        if growpart "$disk" "$part" >/dev/null 2>&1; then resize2fs "$src" >/dev/null 2>&1 && echo "kiln-growroot: grew $src"; fi
        exit 0

        """#

    /// Everything that determines the root filesystem, for the cache key.
    public static func rootfsFingerprint(mirror: String) -> String {
        var parts = [
            revision, suite, mirror, packages.joined(separator: ","), kernelArguments,
            maskedUnits.joined(separator: ","), enabledUnits.joined(separator: ",")
        ]
        for f in files { parts.append("\(f.path):\(f.mode):\(f.content)") }
        return parts.joined(separator: "\n")
    }
}
