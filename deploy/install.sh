#!/usr/bin/env bash
# Installs a built kiln binary, the systemd unit and the example configuration, and creates the `kiln`
# system user. Run as root from the repository root after `swift build -c release --product kiln`:
#
#   sudo deploy/install.sh [--binary .build/release/kiln] [--root DIR] [--no-start]
#
# --root DIR installs into another root (a throwaway one in scripts/check-deploy); nothing is started then.
# --no-start only installs. Safe to run again (an upgrade): an existing /etc/kiln/kiln.yaml is never
# overwritten, and a running controller is restarted onto the new binary (builds in progress survive it).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
binary=.build/release/kiln
root=/
start=1

usage() { sed -n '2,9s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }
while (($#)); do
  case $1 in
    --binary) binary=${2:?--binary needs a path}; shift 2 ;;
    --binary=*) binary=${1#*=}; shift ;;
    --root) root=${2:?--root needs a directory}; shift 2 ;;
    --root=*) root=${1#*=}; shift ;;
    --no-start) start=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

[[ -f $binary && -x $binary ]] || {
  echo "install.sh: no executable at $binary (build it: swift build -c release --product kiln)" >&2; exit 1; }
[[ -d $root ]] || { echo "install.sh: --root $root is not a directory" >&2; exit 1; }
root=$(cd "$root" && pwd -P)   # useradd --root wants an absolute path
r=${root%/}                    # prefix for paths: "" for /
[[ $(id -u) -eq 0 ]] || { echo "install.sh: run as root (sudo)" >&2; exit 1; }

unit=kiln-controller.service
rootopt=()
[[ $root != / ]] && rootopt=(--root "$root")

# The kiln system user and group. Looked up in the target root's files, not through NSS, so that --root works.
has_group() { grep -q "^$1:" "$r/etc/group"; }
if ! has_group kiln; then
  groupadd "${rootopt[@]}" --system kiln
fi
if ! grep -q '^kiln:' "$r/etc/passwd"; then
  useradd "${rootopt[@]}" --system --gid kiln --home-dir /var/lib/kiln --no-create-home \
    --shell /usr/sbin/nologin --comment "Kiln image builder" kiln
  echo "install.sh: created system user kiln"
fi
# /dev/kvm belongs to group kvm: membership lets the service (and `sudo -u kiln kiln ...`) use KVM. Debian's
# udev package makes the group; without udev there may be none, and the unit's SupplementaryGroups=kvm
# would then fail its start.
if ! has_group kvm; then
  groupadd "${rootopt[@]}" --system kvm
  echo "install.sh: created group kvm"
fi
if ! grep -Eq '^kvm:[^:]*:[^:]*:(.*,)?kiln(,|$)' "$r/etc/group"; then
  usermod "${rootopt[@]}" --append --groups kvm kiln
fi
# Numeric ids from the target root: `install -o kiln` would resolve the name on this host.
uid=$(awk -F: '$1 == "kiln" { print $3 }' "$r/etc/passwd")
gid=$(awk -F: '$1 == "kiln" { print $3 }' "$r/etc/group")

install -D -m 0755 "$binary" "$r/usr/local/bin/kiln"
install -D -m 0644 "$here/systemd/$unit" "$r/etc/systemd/system/$unit"
# /etc/kiln: root writes it, the service (group kiln) reads it, including secrets such as token files.
install -d -o 0 -g "$gid" -m 0750 "$r/etc/kiln"
fresh_config=0
if [[ ! -e $r/etc/kiln/kiln.yaml ]]; then
  install -o 0 -g "$gid" -m 0640 "$here/kiln.yaml" "$r/etc/kiln/kiln.yaml"
  fresh_config=1
  echo "install.sh: installed the example configuration at /etc/kiln/kiln.yaml"
else
  echo "install.sh: kept the existing /etc/kiln/kiln.yaml"
fi
install -d -o "$uid" -g "$gid" -m 0750 "$r/var/lib/kiln" "$r/var/cache/kiln"
echo "install.sh: installed $r/usr/local/bin/kiln and $r/etc/systemd/system/$unit"

started=0
if ((start)) && [[ $root == / ]]; then
  if [[ -d /run/systemd/system ]]; then
    systemctl daemon-reload
    if ((fresh_config)); then
      # The example configuration names example.com repositories: starting on it would only fail. Enabled
      # and started by the last next step below.
      echo "install.sh: not starting $unit before /etc/kiln/kiln.yaml is edited"
    else
      systemctl enable "$unit"
      systemctl restart "$unit"   # also an upgrade: KillMode=process leaves running builds alone
      started=1
      echo "install.sh: $unit enabled and (re)started; systemctl status $unit"
    fi
  else
    echo "install.sh: systemd is not running here (PID 1 is $(cat /proc/1/comm 2>/dev/null || echo unknown));" \
      "start the controller yourself: sudo -u kiln KILN_CACHE_DIR=/var/cache/kiln /usr/local/bin/kiln controller --config /etc/kiln/kiln.yaml"
  fi
fi

cat <<EOF

Next steps:
  1. Edit /etc/kiln/kiln.yaml: repositories, credentials (token files under /etc/kiln, group kiln, mode 0640), regions.
  2. Check it as the service reads it:  sudo -u kiln kiln config check --config /etc/kiln/kiln.yaml
  3. Bootstrap base images, as root, then give them to kiln:
       sudo KILN_CACHE_DIR=/var/cache/kiln kiln images bootstrap debian-12 --generation V2 --config /etc/kiln/kiln.yaml
       sudo chown -R kiln:kiln /var/lib/kiln /var/cache/kiln
EOF
if ((started)); then
  echo "  4. Restart after changing the configuration: sudo systemctl restart $unit"
else
  echo "  4. Start it: sudo systemctl enable --now $unit"
fi
echo "  Health: curl -s localhost:8080/readyz; metrics at /metrics; logs: journalctl -u $unit"
