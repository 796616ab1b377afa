package registry

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/awsfota/awsfota/cloud/pki"
	bolt "go.etcd.io/bbolt"
)

func open(t *testing.T) *Registry {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "c.db"), 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	r, err := Open(db, Config{Region: "us-east-1", AccountID: "000000000000"})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestThings(t *testing.T) {
	r := open(t)
	th, err := r.CreateThing("dev-1", map[string]string{"model": "nrf9160"})
	if err != nil {
		t.Fatal(err)
	}
	if th.ARN != "arn:aws:iot:us-east-1:000000000000:thing/dev-1" || th.Version != 1 {
		t.Fatalf("thing %+v", th)
	}
	again, err := r.CreateThing("dev-1", map[string]string{"model": "nrf9160"})
	if err != nil || again.ID != th.ID {
		t.Fatalf("idempotent create: %+v %v", again, err)
	}
	if _, err := r.CreateThing("dev-1", nil); !errors.Is(err, ErrExists) {
		t.Fatalf("conflicting create: %v", err)
	}
	if _, err := r.CreateThing("bad name", nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad name: %v", err)
	}
	r.CreateThing("dev-0", nil)
	list, _ := r.ListThings()
	if len(list) != 2 || list[0].Name != "dev-0" {
		t.Fatalf("list %+v", list)
	}
	if _, err := r.DescribeThing("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if err := r.DeleteThing("dev-0"); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteThing("dev-0"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
}

func TestCertificatesAndAuthorize(t *testing.T) {
	r := open(t)
	ca, _ := pki.LoadOrCreate(t.TempDir(), nil)
	iss, _ := ca.IssueClient("dev-1")
	r.CreateThing("dev-1", nil)
	r.CreateThing("dev-2", nil)
	if err := r.Authorize(iss.Cert, iss.ID, "dev-1"); !errors.Is(err, ErrDenied) {
		t.Fatalf("unregistered: %v", err)
	}
	if _, err := r.AddCertificate(iss.ID, string(iss.CertPEM), StatusActive); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AddCertificate(iss.ID, string(iss.CertPEM), StatusActive); !errors.Is(err, ErrExists) {
		t.Fatal(err)
	}
	if err := r.Authorize(iss.Cert, iss.ID, "dev-1"); !errors.Is(err, ErrDenied) {
		t.Fatalf("unattached: %v", err)
	}
	if err := r.AttachThingPrincipal("dev-1", iss.ID); err != nil {
		t.Fatal(err)
	}
	if err := r.Authorize(iss.Cert, iss.ID, "dev-1"); err != nil {
		t.Fatal(err)
	}
	if err := r.Authorize(iss.Cert, iss.ID, "dev-2"); !errors.Is(err, ErrDenied) {
		t.Fatalf("other thing: %v", err)
	}
	if err := r.UpdateCertificateStatus(iss.ID, StatusInactive); err != nil {
		t.Fatal(err)
	}
	if err := r.Authorize(iss.Cert, iss.ID, "dev-1"); !errors.Is(err, ErrDenied) {
		t.Fatalf("inactive: %v", err)
	}
	if err := r.UpdateCertificateStatus(iss.ID, "BOGUS"); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
	if err := r.DeleteThing("dev-1"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("delete with attached certificate: %v", err)
	}
	if err := r.AttachThingPrincipal("nope", iss.ID); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	c, err := r.DescribeCertificate(iss.ID)
	if err != nil || c.Status != StatusInactive || len(c.Things) != 1 {
		t.Fatalf("%+v %v", c, err)
	}
}
