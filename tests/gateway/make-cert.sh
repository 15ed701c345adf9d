#!/bin/sh
# Writes DIR/ca.pem, DIR/cert.pem, DIR/key.pem: a throwaway CA and a server
# certificate it signed for localhost and 127.0.0.1 (for the fake gateway).
set -eu
dir=${1:?usage: make-cert.sh DIR}
mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
	-subj "/CN=chatmail-notify test CA" \
	-addext "basicConstraints=critical,CA:TRUE" \
	-addext "keyUsage=critical,keyCertSign,cRLSign" \
	-keyout "$work/ca-key.pem" -out "$work/ca.pem" 2>/dev/null

openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=localhost" \
	-keyout "$work/key.pem" -out "$work/req.pem" 2>/dev/null

cat > "$work/ext.cnf" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
EXT
openssl x509 -req -in "$work/req.pem" -CA "$work/ca.pem" -CAkey "$work/ca-key.pem" \
	-CAcreateserial -days 3650 -sha256 -extfile "$work/ext.cnf" \
	-out "$work/cert.pem" 2>/dev/null

chmod 600 "$work/key.pem"
mv "$work/ca.pem" "$dir/ca.pem"
mv "$work/cert.pem" "$dir/cert.pem"
mv "$work/key.pem" "$dir/key.pem"
