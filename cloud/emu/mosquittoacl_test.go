package emu

import (
	"crypto/x509/pkix"
	"os"
	"strings"
	"testing"

	"github.com/awsfota/awsfota/cloud/pki"
)

// TestMosquittoACL: the access list names each device certificate by its
// subject as Mosquitto's use_subject_as_username does (RFC 2253, last
// attribute first) and grants it its things' topics; a subject that would
// break the list's lines is refused.
func TestMosquittoACL(t *testing.T) {
	ca, err := pki.LoadOrCreate(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := ca.IssueClientSubject(pkix.Name{CommonName: "AWS IoT Certificate", OrganizationalUnit: []string{"0123abcd"}, Organization: []string{"awsfota device"}})
	if err != nil {
		t.Fatal(err)
	}
	user, err := certificateUser(iss.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if want := "CN=AWS IoT Certificate,OU=0123abcd,O=awsfota device"; user != want {
		t.Fatalf("user %q, want %q", user, want)
	}
	acl := mosquittoACL([]aclDevice{{user: user, things: []string{"dev-1", "dev-2"}}})
	for _, want := range []string{
		"user CN=awsfota-jobs,O=awsfota cloud\ntopic readwrite $aws/things/#\n",
		"\nuser " + user + "\ntopic readwrite $aws/things/dev-1/#\ntopic readwrite $aws/things/dev-2/#\n",
	} {
		if !strings.Contains(acl, want) {
			t.Errorf("the list lacks %q:\n%s", want, acl)
		}
	}
	if strings.Contains(acl, "pattern") {
		t.Errorf("the list grants topics by pattern:\n%s", acl)
	}
	for _, bad := range []string{"CN=x\ntopic readwrite #", "CN=x\r", " CN=x", "", "CN=\x00"} {
		if aclSafe(bad) {
			t.Errorf("aclSafe(%q) = true", bad)
		}
	}
	if !aclSafe(user) {
		t.Errorf("aclSafe(%q) = false", user)
	}
}

// TestMosquittoOldConfigRefused: a configuration from before the access
// list named certificates by subject would shut every device out; the
// cloud refuses to start on it and says how to fix it.
func TestMosquittoOldConfigRefused(t *testing.T) {
	dir := t.TempDir()
	files, err := WriteMosquittoConfig(dir, "127.0.0.1:18883")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cloud{cfg: Config{DataDir: dir}}
	conf, _ := os.ReadFile(files.Conf)
	os.WriteFile(files.Conf, []byte(strings.Replace(string(conf), "use_subject_as_username true", "use_identity_as_username true", 1)), 0o644)
	err = c.updateMosquittoACL()
	if err == nil || !strings.Contains(err.Error(), "awsfota cloud mosquitto-config") {
		t.Fatalf("an old configuration: %v", err)
	}
}
