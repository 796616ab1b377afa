package emu

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/awsfota/awsfota/atomicfile"
	"github.com/awsfota/awsfota/cloud/broker"
	"github.com/awsfota/awsfota/cloud/pki"
	"github.com/awsfota/awsfota/cloud/registry"
)

// MosquittoFiles are the files WriteMosquittoConfig wrote.
type MosquittoFiles struct {
	Conf     string // mosquitto -c Conf
	ACL      string
	CertFile string // the broker's server certificate, from the local CA
	KeyFile  string
	CAFile   string // the local CA: devices and the Jobs service are issued by it
	// CRLFile revokes the certificates the registry holds as INACTIVE or
	// REVOKED (and deleted ones); the local cloud rewrites it when a
	// certificate changes and signals Mosquitto (PIDFile) to reload it.
	CRLFile string
	PIDFile string
}

// WriteMosquittoConfig writes, under <dataDir>/mosquitto/, a configuration
// that makes Mosquitto the MQTT broker of the local cloud on listen
// (host:port): mutual TLS with a server certificate from the local CA
// (valid for localhost, 127.0.0.1 and serverNames; the CA is created if the
// data directory has none yet), the certificate's subject as the username,
// and an ACL that lets the Jobs service (its certificate, jobsSubject) use
// every thing's topics while each device certificate may use only the
// topics of the things it is attached to, $aws/things/<thing>/ — as AWS's
// policy variable iot:Connection.Thing.ThingName confines it. A cloud
// started with ExternalMQTT on the same data directory rewrites the ACL
// from the registry when it starts and whenever a certificate is attached,
// detached or changes state, and makes Mosquitto reload it.
//
// Certificates that are not ACTIVE are refused through a revocation list
// (crlfile) signed by the local CA, which a cloud started with ExternalMQTT
// on the same data directory rewrites whenever a certificate changes state
// and makes Mosquitto reload (SIGHUP to the process in pid_file).
//
// Run `mosquitto -c <Conf>`, then start the cloud with ExternalMQTT set to
// listen. What Mosquitto cannot do as AWS does: it does not bind the client
// id to the thing, keeps the live connections of a certificate revoked
// after they connected, and routes replies to subscribers.
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
	f := MosquittoFiles{Conf: filepath.Join(dir, "mosquitto.conf"), ACL: filepath.Join(dir, mosquittoACLFile),
		CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server.key"), CAFile: ca.CertFile(),
		CRLFile: filepath.Join(dir, mosquittoCRL), PIDFile: filepath.Join(dir, mosquittoPID)}
	acl := mosquittoACL(nil)
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
use_subject_as_username true
crlfile %s
acl_file %s
pid_file %s
`, dataDir, listen, runAs, port, host, f.CAFile, f.CertFile, f.KeyFile, f.CRLFile, f.ACL, f.PIDFile)
	files := []struct {
		path string
		data []byte
		mode os.FileMode
	}{{f.CertFile, srv.CertPEM, 0o644}, {f.KeyFile, srv.KeyPEM, 0o600}, {f.ACL, []byte(acl), 0o644}, {f.Conf, []byte(conf), 0o644}}
	if _, err := os.Stat(f.CRLFile); errors.Is(err, fs.ErrNotExist) {
		// Mosquitto needs the file to start; the cloud fills it from the
		// registry when it starts.
		crl, err := ca.CRL(nil, big.NewInt(1))
		if err != nil {
			return MosquittoFiles{}, err
		}
		files = append(files, struct {
			path string
			data []byte
			mode os.FileMode
		}{f.CRLFile, crl, 0o644})
	}
	for _, w := range files {
		if err := atomicfile.WriteFile(w.path, w.data, w.mode); err != nil {
			return MosquittoFiles{}, fmt.Errorf("emu: %w", err)
		}
	}
	return f, nil
}

// Files of the Mosquitto configuration that the cloud keeps up to date.
const (
	mosquittoCRL     = "crl.pem"
	mosquittoPID     = "mosquitto.pid"
	mosquittoACLFile = "acl"
)

// jobsSubject is the subject of the certificate the Jobs service presents
// to an external broker: its user name there. Device certificates are
// issued with the organization "awsfota device", never this one.
var jobsSubject = pkix.Name{CommonName: broker.DefaultExternalClientID, Organization: []string{"awsfota cloud"}}

// aclDevice is what one device certificate may use on Mosquitto.
type aclDevice struct {
	user   string   // the certificate's subject, as Mosquitto names it
	things []string // the things it is attached to
}

// mosquittoACL is the text of Mosquitto's acl_file: the Jobs service may use
// every thing's topics, each device certificate its things' topics.
func mosquittoACL(devices []aclDevice) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by awsfota: who may use which topics on the local cloud's Mosquitto.
# The local cloud rewrites it from its registry (cloud serve --external-mqtt).
# User names are certificate subjects (use_subject_as_username).

# The Jobs service of the local cloud.
user %s
topic readwrite $aws/things/#
topic write $aws/events/#
`, subjectName(jobsSubject.ToRDNSequence()))
	for _, d := range devices {
		fmt.Fprintf(&b, "\nuser %s\n", d.user)
		for _, t := range d.things {
			fmt.Fprintf(&b, "topic readwrite $aws/things/%s/#\n", t)
		}
	}
	return b.String()
}

// subjectName is a certificate subject as Mosquitto's
// use_subject_as_username names it: RFC 2253, the last attribute first.
// (OpenSSL escapes bytes beyond ASCII as \XX, which this does not: a subject
// with such characters does not match its entry.)
func subjectName(rdns pkix.RDNSequence) string { return rdns.String() }

// certificateUser is the Mosquitto user name of a certificate.
func certificateUser(cert *x509.Certificate) (string, error) {
	var rdns pkix.RDNSequence
	if _, err := asn1.Unmarshal(cert.RawSubject, &rdns); err != nil {
		return "", err
	}
	return subjectName(rdns), nil
}

// aclSafe reports whether a user name can stand on a line of Mosquitto's
// access list as it is: no control characters, no blanks at either end.
func aclSafe(user string) bool {
	if user == "" || strings.TrimSpace(user) != user {
		return false
	}
	for _, r := range user {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// updateMosquittoACL rewrites the acl_file of a Mosquitto configured by
// WriteMosquittoConfig in the cloud's data directory from the registry:
// every ACTIVE certificate may use the topics of the things it is attached
// to. It signals Mosquitto to reload it. Without such a configuration it
// does nothing.
func (c *Cloud) updateMosquittoACL() error {
	c.mosqMu.Lock()
	defer c.mosqMu.Unlock()
	dir := filepath.Join(c.cfg.DataDir, "mosquitto")
	path := filepath.Join(dir, mosquittoACLFile)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil // Mosquitto was not configured here
	}
	if conf, err := os.ReadFile(filepath.Join(dir, "mosquitto.conf")); err == nil && strings.Contains(string(conf), "use_identity_as_username true") {
		// Its user names are common names, which this list no longer uses:
		// every device would be shut out of its topics.
		return fmt.Errorf("emu: %s was written by an earlier awsfota (user names from the common name): run 'awsfota cloud mosquitto-config' again and restart Mosquitto", filepath.Join(dir, "mosquitto.conf"))
	}
	certs, err := c.Registry.ListCertificates()
	if err != nil {
		return err
	}
	var devices []aclDevice
	for _, rc := range certs {
		if rc.Status != registry.StatusActive || len(rc.Things) == 0 {
			continue
		}
		user, ok := c.aclUsers[rc.ID]
		if !ok {
			cert, err := pki.ParseCertificatePEM([]byte(rc.PEM))
			if err != nil {
				c.cfg.Logger.Warn("a registered certificate does not parse; it may use no topic on Mosquitto", "certificate", rc.ID, "err", err)
				continue
			}
			if user, err = certificateUser(cert); err != nil {
				c.cfg.Logger.Warn("a registered certificate's subject does not parse; it may use no topic on Mosquitto", "certificate", rc.ID, "err", err)
				continue
			}
			if !aclSafe(user) {
				// A registered certificate's subject is anyone's text: a line
				// break in it would write lines of its own into the list.
				c.cfg.Logger.Warn("a registered certificate's subject holds control characters; it may use no topic on Mosquitto", "certificate", rc.ID)
				continue
			}
			if c.aclUsers == nil {
				c.aclUsers = map[string]string{}
			}
			c.aclUsers[rc.ID] = user
		}
		devices = append(devices, aclDevice{user: user, things: rc.Things})
	}
	if err := atomicfile.WriteFile(path, []byte(mosquittoACL(devices)), 0o644); err != nil {
		return fmt.Errorf("emu: mosquitto access list: %w", err)
	}
	return signalMosquitto(filepath.Join(dir, mosquittoPID))
}

// updateMosquittoCRL rewrites the revocation list of a Mosquitto configured
// by WriteMosquittoConfig in the cloud's data directory, from the registry,
// and signals Mosquitto to reload it. It revokes every registered
// certificate that is not ACTIVE and keeps revoked the ones the previous
// list revoked that the registry no longer holds (deleted: they must not
// come back). Without such a configuration it does nothing.
func (c *Cloud) updateMosquittoCRL() error {
	c.mosqMu.Lock()
	defer c.mosqMu.Unlock()
	dir := filepath.Join(c.cfg.DataDir, "mosquitto")
	path := filepath.Join(dir, mosquittoCRL)
	old, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // Mosquitto was not configured here
	}
	if err != nil {
		return fmt.Errorf("emu: mosquitto revocation list: %w", err)
	}
	certs, err := c.Registry.ListCertificates()
	if err != nil {
		return err
	}
	known := map[string]bool{}
	var serials []*big.Int
	for _, rc := range certs {
		cert, err := pki.ParseCertificatePEM([]byte(rc.PEM))
		if err != nil {
			c.cfg.Logger.Warn("a registered certificate does not parse; it cannot be revoked on Mosquitto", "certificate", rc.ID, "err", err)
			continue
		}
		known[cert.SerialNumber.String()] = true
		if rc.Status != registry.StatusActive {
			serials = append(serials, cert.SerialNumber)
		}
	}
	number := big.NewInt(1)
	if blk, _ := pem.Decode(old); blk != nil {
		if prev, err := x509.ParseRevocationList(blk.Bytes); err == nil {
			for _, e := range prev.RevokedCertificateEntries {
				if !known[e.SerialNumber.String()] {
					serials = append(serials, e.SerialNumber) // deleted from the registry
				}
			}
			if prev.Number != nil {
				number.Add(prev.Number, big.NewInt(1))
			}
		}
	}
	crl, err := c.CA.CRL(serials, number)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, crl, 0o644); err != nil {
		return fmt.Errorf("emu: mosquitto revocation list: %w", err)
	}
	return signalMosquitto(filepath.Join(dir, mosquittoPID))
}

// signalMosquitto asks the Mosquitto whose pid_file is path to reload its
// configuration, revocation list included (SIGHUP).
func signalMosquitto(path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // not running (yet): it reads the list when it starts
	}
	if err != nil {
		return fmt.Errorf("emu: mosquitto's pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return fmt.Errorf("emu: mosquitto's pid file %s holds %q, not a process id", path, b)
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("emu: signalling mosquitto (pid %d) to reload its revocation list: %w", pid, err)
	}
	return nil
}
