#!/bin/sh
# Baseline hardening for the Debian 12 golden image.
set -eu
echo "kiln: hardening $(hostname)"
# No password logins over SSH.
sudo mkdir -p /etc/ssh/sshd_config.d
printf 'PasswordAuthentication no\nPermitRootLogin no\n' | sudo tee /etc/ssh/sshd_config.d/50-kiln-hardening.conf >/dev/null
# Record what built this image.
sudo mkdir -p /etc/kiln
echo "hardened=$(date -u +%Y-%m-%dT%H:%M:%SZ)" | sudo tee /etc/kiln/hardening >/dev/null
