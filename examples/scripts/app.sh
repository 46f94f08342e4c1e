#!/bin/sh
# Application layer on top of the Debian 12 base image.
set -eu
sudo mkdir -p /opt/app
echo "app-version=1.0.0" | sudo tee /opt/app/VERSION >/dev/null
