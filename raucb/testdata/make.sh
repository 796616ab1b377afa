#!/bin/sh
# Rebuilds the test bundles with RAUC 1.8 and OpenSSL (Debian: rauc,
# squashfs-tools, openssl). The tests use the files as they are; run this
# only to change them, and commit the result.
set -eu
cd "$(dirname "$0")"
rm -rf work && mkdir work
days=36500

# An RSA CA with a signer it issues (a chain of two), and a lone ECDSA
# signer that is its own CA.
openssl req -x509 -newkey rsa:2048 -nodes -keyout work/ca.key -out ca-rsa.pem -days $days \
	-subj "/O=awsfota test/CN=awsfota test CA" -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout work/rsa.key -out work/rsa.csr -subj "/O=awsfota test/CN=awsfota test signer" 2>/dev/null
openssl x509 -req -in work/rsa.csr -CA ca-rsa.pem -CAkey work/ca.key -CAcreateserial -out work/rsa.pem -days $days \
	-extfile /dev/stdin 2>/dev/null <<EXT
keyUsage=critical,digitalSignature
EXT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout work/ec.key -out ec.pem -days $days \
	-subj "/O=awsfota test/CN=awsfota test EC signer" 2>/dev/null

bundle() { # name format signer-cert signer-key [mksquashfs args]
	d=work/$1.d
	mkdir -p "$d"
	head -c 12000 /dev/urandom > "$d/rootfs.img"
	printf '[update]\ncompatible=awsfota-test\nversion=1.2.3\ndescription=test\\sbundle\n\n[bundle]\nformat=%s\n\n[image.rootfs]\nfilename=rootfs.img\n' "$2" > "$d/manifest.raucm"
	if [ -n "${5:-}" ]; then
		rauc bundle --cert="$3" --key="$4" --mksquashfs-args="$5" "$d" "$1.raucb" 
	else
		rauc bundle --cert="$3" --key="$4" "$d" "$1.raucb" 
	fi
}
bundle plain-rsa plain work/rsa.pem work/rsa.key
bundle verity-ec verity ec.pem work/ec.key
bundle plain-xz plain ec.pem work/ec.key "-comp xz"
rm -rf work ca-rsa.srl
