package registry

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"github.com/awsfota/awsfota/cloud/pki"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func open(t testing.TB) *Registry {
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

func TestCertificateLifecycle(t *testing.T) {
	r := open(t)
	ca, _ := pki.LoadOrCreate(t.TempDir(), nil)
	a, _ := ca.IssueClient("dev-1")
	b, _ := ca.IssueClient("dev-1")
	r.CreateThing("dev-1", nil)
	r.AddCertificate(a.ID, string(a.CertPEM), StatusActive)
	r.AddCertificate(b.ID, string(b.CertPEM), StatusInactive)
	r.AttachThingPrincipal("dev-1", a.ID)
	r.AttachThingPrincipal("dev-1", b.ID)
	if ps, err := r.ThingPrincipals("dev-1"); err != nil || len(ps) != 2 {
		t.Fatalf("%+v %v", ps, err)
	}
	if list, _ := r.ListCertificates(); len(list) != 2 {
		t.Fatal(list)
	}
	if err := r.DeleteCertificate(a.ID); !errors.Is(err, ErrCertificateState) {
		t.Fatalf("deleted an ACTIVE certificate: %v", err)
	}
	if err := r.DeleteCertificate(b.ID); !errors.Is(err, ErrConflict) {
		t.Fatalf("deleted an attached certificate: %v", err)
	}
	if err := r.DetachThingPrincipal("dev-1", b.ID); err != nil {
		t.Fatal(err)
	}
	if err := r.DetachThingPrincipal("dev-1", b.ID); err != nil {
		t.Fatal("detaching twice:", err)
	}
	if err := r.DeleteCertificate(b.ID); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteCertificate(b.ID); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	// REVOKED is final.
	if err := r.UpdateCertificateStatus(a.ID, StatusRevoked); err != nil {
		t.Fatal(err)
	}
	if err := r.UpdateCertificateStatus(a.ID, StatusActive); !errors.Is(err, ErrCertificateState) {
		t.Fatal(err)
	}
	if _, err := r.ThingPrincipals("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
}

func TestThingGroups(t *testing.T) {
	r := open(t)
	for _, th := range []string{"a", "b", "c"} {
		r.CreateThing(th, nil)
	}
	root, err := r.CreateThingGroup("fleet", "", "all devices", map[string]string{"k": "v"})
	if err != nil || root.ARN != "arn:aws:iot:us-east-1:000000000000:thinggroup/fleet" || root.Version != 1 {
		t.Fatalf("%+v %v", root, err)
	}
	if again, err := r.CreateThingGroup("fleet", "", "all devices", map[string]string{"k": "v"}); err != nil || again.ID != root.ID {
		t.Fatalf("idempotent create: %v", err)
	}
	if _, err := r.CreateThingGroup("fleet", "", "other", nil); !errors.Is(err, ErrExists) {
		t.Fatal(err)
	}
	if _, err := r.CreateThingGroup("eu", "nope", "", nil); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
	if _, err := r.CreateThingGroup("bad/name", "", "", nil); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
	r.CreateThingGroup("eu", "fleet", "", nil)
	r.CreateThingGroup("eu-west", "eu", "", nil)
	r.CreateThingGroup("lab", "", "", nil)
	if err := r.AddThingToThingGroup("a", "eu-west"); err != nil {
		t.Fatal(err)
	}
	r.AddThingToThingGroup("b", "fleet")
	r.AddThingToThingGroup("b", "lab")
	if err := r.AddThingToThingGroup("a", "eu-west"); err != nil {
		t.Fatal("adding twice:", err)
	}
	// One group per hierarchy.
	if err := r.AddThingToThingGroup("a", "fleet"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a thing in two groups of one hierarchy: %v", err)
	}
	if err := r.AddThingToThingGroup("nope", "fleet"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if err := r.AddThingToThingGroup("a", "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	// Jobs see a thing of eu-west in eu and fleet too.
	if gs, _ := r.GroupsOfThing("a"); !slices.Equal(gs, []string{"eu", "eu-west", "fleet"}) {
		t.Fatal(gs)
	}
	if th, _ := r.ThingsInGroup("fleet"); !slices.Equal(th, []string{"a", "b"}) {
		t.Fatal(th)
	}
	if th, _ := r.ListThingsInThingGroup("fleet", false); !slices.Equal(th, []string{"b"}) {
		t.Fatal(th)
	}
	if gs, _ := r.ListThingGroupsForThing("b"); len(gs) != 2 {
		t.Fatal(gs)
	}
	if _, err := r.ThingsInGroup("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if err := r.DeleteThingGroup("eu"); !errors.Is(err, ErrConflict) {
		t.Fatalf("deleted a group with a child: %v", err)
	}
	if err := r.RemoveThingFromThingGroup("b", "lab"); err != nil {
		t.Fatal(err)
	}
	if err := r.RemoveThingFromThingGroup("b", "lab"); err != nil {
		t.Fatal("removing twice:", err)
	}
	if gs, _ := r.GroupsOfThing("b"); !slices.Equal(gs, []string{"fleet"}) {
		t.Fatal(gs)
	}
	// Deleting a thing takes it out of its groups; deleting a group frees its things.
	r.DeleteThing("b")
	if th, _ := r.ListThingsInThingGroup("fleet", false); len(th) != 0 {
		t.Fatal(th)
	}
	r.DeleteThingGroup("eu-west")
	if gs, _ := r.GroupsOfThing("a"); len(gs) != 0 {
		t.Fatal(gs)
	}
	if err := r.DeleteThingGroup("eu-west"); err != nil {
		t.Fatal("deleting a missing group:", err)
	}
	for i := range MaxGroupsPerThing + 1 {
		name := "g" + string(rune('a'+i))
		r.CreateThingGroup(name, "", "", nil)
		err := r.AddThingToThingGroup("c", name)
		if (i < MaxGroupsPerThing) != (err == nil) {
			t.Fatalf("group %d: %v", i, err)
		}
	}
	if list, _ := r.ListThingGroups(); len(list) != 14 {
		t.Fatal(len(list))
	}
}

func TestHasCertificate(t *testing.T) {
	r := open(t)
	if r.HasCertificate("abc") {
		t.Fatal("an unknown certificate is registered")
	}
	if _, err := r.AddCertificate("abc", "pem", StatusInactive); err != nil {
		t.Fatal(err)
	}
	if !r.HasCertificate("abc") {
		t.Fatal("an INACTIVE certificate is not registered")
	}
	if err := r.DeleteCertificate("abc"); err != nil {
		t.Fatal(err)
	}
	if r.HasCertificate("abc") {
		t.Fatal("a deleted certificate is still registered")
	}
}

// BenchmarkAuthorize is the registry's part of every device's CONNECT.
func BenchmarkAuthorize(b *testing.B) {
	r := open(b)
	ca, err := pki.LoadOrCreate(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	iss, _ := ca.IssueClient("dev-1")
	r.CreateThing("dev-1", nil)
	if _, err := r.AddCertificate(iss.ID, string(iss.CertPEM), StatusActive); err != nil {
		b.Fatal(err)
	}
	if err := r.AttachThingPrincipal("dev-1", iss.ID); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Authorize(iss.Cert, iss.ID, "dev-1"); err != nil {
			b.Fatal(err)
		}
	}
}
