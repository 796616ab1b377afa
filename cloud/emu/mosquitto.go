package emu

import (
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"

	"github.com/awsfota/awsfota/cloud/broker"
	"github.com/awsfota/awsfota/cloud/pki"
	"github.com/awsfota/awsfota/internal/atomicfile"
)

// MosquittoFiles are the files WriteMosquittoConfig wrote.
type MosquittoFiles struct {
	Conf     string // mosquitto -c Conf
	ACL      string
	CertFile string // the broker's server certificate, from the local CA
	KeyFile  string
	CAFile   string // the local CA: devices and the Jobs service are issued by it
}

// WriteMosquittoConfig writes, under <dataDir>/mosquitto/, a configuration
// that makes Mosquitto the MQTT broker of the local cloud on listen
// (host:port): mutual TLS with a server certificate from the local CA
// (valid for localhost, 127.0.0.1 and serverNames; the CA is created if the
// data directory has none yet), the certificate's common name as the
// username, and an ACL that lets the Jobs service (whose certificate's name
// is broker.DefaultExternalClientID) use every thing's topics while each
// device is confined to $aws/things/<its common name>/ — the thing name, for
// certificates that ProvisionThing and `awsfota thing create` issue.
//
// Run `mosquitto -c <Conf>`, then start the cloud with ExternalMQTT set to
// listen. What Mosquitto cannot do as AWS does: it does not consult the
// registry (an INACTIVE certificate still connects), does not bind the
// client id to the thing, and routes replies to subscribers.
func WriteMosquittoConfig(dataDir, listen string, serverNames ...string) (MosquittoFiles, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return MosquittoFiles{}, fmt.Errorf("emu: mosquitto listen address %q: use host:port (%v)", listen, err)
	}
	ca, err := pki.LoadOrCreate(filepath.Join(dataDir, "pki"), nil)
	if err != nil {
		return MosquittoFiles{}, err
	}
	dir := filepath.Join(dataDir, "mosquitto")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return MosquittoFiles{}, fmt.Errorf("emu: %w", err)
	}
	names := append([]string{host}, serverNames...)
	srv, err := ca.IssueServer(names...)
	if err != nil {
		return MosquittoFiles{}, err
	}
	f := MosquittoFiles{Conf: filepath.Join(dir, "mosquitto.conf"), ACL: filepath.Join(dir, "acl"),
		CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server.key"), CAFile: ca.CertFile()}
	acl := fmt.Sprintf(`# Written by awsfota: who may use which topics on the local cloud's Mosquitto.
# The Jobs service of the local cloud.
user %s
topic readwrite $aws/things/#
topic write $aws/events/#

# Every device (username = the certificate's common name = its thing name):
# its own topics only.
pattern readwrite $aws/things/%%u/#
`, broker.DefaultExternalClientID)
	// Started as root, Mosquitto switches to this user: the one who owns
	// the files written here.
	runAs := "mosquitto"
	if u, err := user.Current(); err == nil {
		runAs = u.Username
	}
	conf := fmt.Sprintf(`# Written by awsfota: Mosquitto as the MQTT broker of the awsfota local cloud.
# Start the cloud with: awsfota cloud serve --data %s --external-mqtt %s
user %s
per_listener_settings false
allow_anonymous false
persistence false
log_dest stderr
log_type error
log_type warning
listener %s %s
cafile %s
certfile %s
keyfile %s
require_certificate true
use_identity_as_username true
acl_file %s
`, dataDir, listen, runAs, port, host, f.CAFile, f.CertFile, f.KeyFile, f.ACL)
	for _, w := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{f.CertFile, srv.CertPEM, 0o644}, {f.KeyFile, srv.KeyPEM, 0o600}, {f.ACL, []byte(acl), 0o644}, {f.Conf, []byte(conf), 0o644}} {
		if err := atomicfile.WriteFile(w.path, w.data, w.mode); err != nil {
			return MosquittoFiles{}, fmt.Errorf("emu: %w", err)
		}
	}
	return f, nil
}
