// Package registry is the local cloud's record of things and certificates —
// what AWS IoT's registry keeps — in the cloud's bbolt database: things,
// device certificates with their status, and which certificate is attached to
// which thing. The broker asks it whether a connecting certificate may act as
// the thing named by the client id.
//
// The calls that provisioning makes by the thousand (CreateThing,
// AddCertificate, AttachThingPrincipal, AddThingToThingGroup) commit through
// bbolt's Batch: concurrent calls share one fsynced transaction, and each
// returns only once it is durable.
//
// It imports the standard library, bbolt, clock and iotjobs; cloud/* must
// never import device/* or sim/.
package registry

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/awsfota/awsfota/clock"
	"github.com/awsfota/awsfota/iotjobs"
	bolt "go.etcd.io/bbolt"
)

// Certificate statuses.
const (
	StatusActive   = "ACTIVE"
	StatusInactive = "INACTIVE"
	StatusRevoked  = "REVOKED"
)

// Thing is a registered thing.
type Thing struct {
	Name       string            `json:"thingName"`
	ARN        string            `json:"thingArn"`
	ID         string            `json:"thingId"`
	Version    int64             `json:"version"`
	Attributes map[string]string `json:"attributes,omitempty"`
	CreatedAt  time.Time         `json:"createdAt"`
}

// Certificate is a registered device certificate.
type Certificate struct {
	ID        string    `json:"certificateId"`
	ARN       string    `json:"certificateArn"`
	PEM       string    `json:"certificatePem"`
	Status    string    `json:"status"`
	Things    []string  `json:"things,omitempty"` // attached things
	CreatedAt time.Time `json:"creationDate"`
}

// Errors.
var (
	// ErrNotFound: no such thing or certificate.
	ErrNotFound = errors.New("resource not found")
	// ErrExists: the resource already exists with other properties.
	ErrExists = errors.New("resource already exists")
	// ErrInvalid: a name or value breaks AWS's rules.
	ErrInvalid = errors.New("invalid request")
	// ErrDenied: the certificate may not connect as that client id.
	ErrDenied = errors.New("not authorized")
	// ErrCertificateState: the certificate's status forbids the change (a
	// REVOKED certificate cannot be reactivated; an ACTIVE one cannot be
	// deleted).
	ErrCertificateState = errors.New("certificate state forbids the operation")
	// ErrConflict: the resource is in use (a certificate still attached to
	// a thing, a thing group with child groups).
	ErrConflict = errors.New("resource in use")
	// ErrVersionConflict: expectedVersion does not match.
	ErrVersionConflict = errors.New("version conflict")
)

var (
	bucketThings      = []byte("registry.things")
	bucketCerts       = []byte("registry.certificates")
	bucketGroups      = []byte("registry.groups")      // group name → ThingGroup
	bucketMembers     = []byte("registry.members")     // group \x00 thing → nothing
	bucketThingGroups = []byte("registry.thinggroups") // thing \x00 group → nothing
	allBuckets        = [][]byte{bucketThings, bucketCerts, bucketGroups, bucketMembers, bucketThingGroups}
)

// Config describes the account the registry belongs to.
type Config struct {
	Region    string
	AccountID string
	Clock     clock.Clock
}

// Registry is safe for concurrent use.
type Registry struct {
	db  *bolt.DB
	cfg Config
}

// Open prepares the registry's buckets in db.
func Open(db *bolt.DB, cfg Config) (*Registry, error) {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real()
	}
	err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	return &Registry{db: db, cfg: cfg}, nil
}

// ThingARN returns the ARN of a thing.
func (r *Registry) ThingARN(name string) string {
	return fmt.Sprintf("arn:aws:iot:%s:%s:thing/%s", r.cfg.Region, r.cfg.AccountID, name)
}

// CertificateARN returns the ARN of a certificate.
func (r *Registry) CertificateARN(id string) string {
	return fmt.Sprintf("arn:aws:iot:%s:%s:cert/%s", r.cfg.Region, r.cfg.AccountID, id)
}

func get[T any](tx *bolt.Tx, bucket []byte, key string, v *T) bool {
	b := tx.Bucket(bucket).Get([]byte(key))
	if b == nil {
		return false
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false
	}
	return true
}

// all reads every record of a bucket, in key order.
func all[T any](db *bolt.DB, bucket []byte) ([]T, error) {
	var out []T
	err := db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(_, v []byte) error {
			var x T
			if err := json.Unmarshal(v, &x); err != nil {
				return err
			}
			out = append(out, x)
			return nil
		})
	})
	return out, err
}

func put(tx *bolt.Tx, bucket []byte, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Bucket(bucket).Put([]byte(key), b)
}

// CreateThing registers a thing. Creating an existing thing with the same
// attributes returns it, as AWS does; other attributes give ErrExists.
func (r *Registry) CreateThing(name string, attrs map[string]string) (Thing, error) {
	if err := iotjobs.ValidateThingName(name); err != nil {
		return Thing{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var out Thing
	err := r.db.Batch(func(tx *bolt.Tx) error {
		if get(tx, bucketThings, name, &out) {
			if !mapsEqual(out.Attributes, attrs) {
				return fmt.Errorf("%w: thing %s exists with other attributes", ErrExists, name)
			}
			return nil
		}
		seq, _ := tx.Bucket(bucketThings).NextSequence()
		out = Thing{Name: name, ARN: r.ThingARN(name), ID: fmt.Sprintf("%08x-0000-4000-8000-%012x", seq, seq),
			Version: 1, Attributes: attrs, CreatedAt: r.cfg.Clock.Now().UTC()}
		return put(tx, bucketThings, name, out)
	})
	return out, err
}

// UpdateThing changes a thing's attributes (UpdateThing): with merge the
// given ones are added or replaced and an empty value removes one; without
// merge they replace all. expectedVersion (when not 0) must be the thing's
// version (ErrVersionConflict otherwise). The version increases.
func (r *Registry) UpdateThing(name string, attrs map[string]string, merge bool, expectedVersion int64) (Thing, error) {
	var t Thing
	err := r.db.Update(func(tx *bolt.Tx) error {
		if !get(tx, bucketThings, name, &t) {
			return fmt.Errorf("%w: thing %s does not exist", ErrNotFound, name)
		}
		if expectedVersion != 0 && expectedVersion != t.Version {
			return fmt.Errorf("%w: thing %s is at version %d, not %d", ErrVersionConflict, name, t.Version, expectedVersion)
		}
		next := map[string]string{}
		if merge {
			maps.Copy(next, t.Attributes)
		}
		for k, v := range attrs {
			if v == "" {
				delete(next, k)
			} else {
				next[k] = v
			}
		}
		if len(next) == 0 {
			next = nil
		}
		t.Attributes = next
		t.Version++
		return put(tx, bucketThings, name, t)
	})
	return t, err
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// DescribeThing returns a thing.
func (r *Registry) DescribeThing(name string) (Thing, error) {
	var t Thing
	err := r.db.View(func(tx *bolt.Tx) error {
		if !get(tx, bucketThings, name, &t) {
			return fmt.Errorf("%w: thing %s does not exist", ErrNotFound, name)
		}
		return nil
	})
	return t, err
}

// ListThings returns every thing, by name.
func (r *Registry) ListThings() ([]Thing, error) { return all[Thing](r.db, bucketThings) }

// DeleteThing removes a thing; as on AWS, it must have no certificate
// attached.
func (r *Registry) DeleteThing(name string) error {
	return r.db.Update(func(tx *bolt.Tx) error {
		var t Thing
		if !get(tx, bucketThings, name, &t) {
			return fmt.Errorf("%w: thing %s does not exist", ErrNotFound, name)
		}
		attached := false
		tx.Bucket(bucketCerts).ForEach(func(_, v []byte) error {
			var c Certificate
			if json.Unmarshal(v, &c) == nil && slices.Contains(c.Things, name) {
				attached = true
			}
			return nil
		})
		if attached {
			return fmt.Errorf("%w: thing %s still has a certificate attached; detach it first", ErrInvalid, name)
		}
		for _, g := range directGroups(tx, name) {
			if err := unlink(tx, name, g); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketThings).Delete([]byte(name))
	})
}

// AddCertificate registers a certificate (issued by the local CA) with a
// status.
func (r *Registry) AddCertificate(id, certPEM, status string) (Certificate, error) {
	if status != StatusActive && status != StatusInactive {
		return Certificate{}, fmt.Errorf("%w: status %q (ACTIVE or INACTIVE)", ErrInvalid, status)
	}
	c := Certificate{ID: id, ARN: r.CertificateARN(id), PEM: certPEM, Status: status, CreatedAt: r.cfg.Clock.Now().UTC()}
	err := r.db.Batch(func(tx *bolt.Tx) error {
		var old Certificate
		if get(tx, bucketCerts, id, &old) {
			return fmt.Errorf("%w: certificate %s", ErrExists, id)
		}
		return put(tx, bucketCerts, id, c)
	})
	return c, err
}

// DescribeCertificate returns a certificate.
func (r *Registry) DescribeCertificate(id string) (Certificate, error) {
	var c Certificate
	err := r.db.View(func(tx *bolt.Tx) error {
		if !get(tx, bucketCerts, id, &c) {
			return fmt.Errorf("%w: certificate %s does not exist", ErrNotFound, id)
		}
		return nil
	})
	return c, err
}

// HasCertificate reports whether a certificate with this ID (the SHA-256
// of its DER) is registered, whatever its status.
func (r *Registry) HasCertificate(id string) bool {
	found := false
	r.db.View(func(tx *bolt.Tx) error {
		found = tx.Bucket(bucketCerts).Get([]byte(id)) != nil
		return nil
	})
	return found
}

// UpdateCertificateStatus sets ACTIVE, INACTIVE or REVOKED.
func (r *Registry) UpdateCertificateStatus(id, status string) error {
	switch status {
	case StatusActive, StatusInactive, StatusRevoked:
	default:
		return fmt.Errorf("%w: status %q (ACTIVE, INACTIVE or REVOKED)", ErrInvalid, status)
	}
	return r.db.Update(func(tx *bolt.Tx) error {
		var c Certificate
		if !get(tx, bucketCerts, id, &c) {
			return fmt.Errorf("%w: certificate %s does not exist", ErrNotFound, id)
		}
		if c.Status == StatusRevoked && status != StatusRevoked {
			return fmt.Errorf("%w: certificate %s is REVOKED and cannot become %s; issue a new one", ErrCertificateState, id, status)
		}
		c.Status = status
		return put(tx, bucketCerts, id, c)
	})
}

// AttachThingPrincipal attaches a certificate to a thing.
func (r *Registry) AttachThingPrincipal(thing, certID string) error {
	return r.db.Batch(func(tx *bolt.Tx) error {
		var t Thing
		if !get(tx, bucketThings, thing, &t) {
			return fmt.Errorf("%w: thing %s does not exist", ErrNotFound, thing)
		}
		var c Certificate
		if !get(tx, bucketCerts, certID, &c) {
			return fmt.Errorf("%w: certificate %s does not exist", ErrNotFound, certID)
		}
		if !slices.Contains(c.Things, thing) {
			c.Things = append(c.Things, thing)
			sort.Strings(c.Things)
		}
		return put(tx, bucketCerts, certID, c)
	})
}

// Authorize decides whether a client presenting cert may connect with
// clientID: the certificate must be registered, ACTIVE and attached to the
// thing named clientID (the usual AWS IoT policy, iot:Connect on
// client/${iot:Connection.Thing.ThingName}).
func (r *Registry) Authorize(cert *x509.Certificate, id, clientID string) error {
	// Every device's CONNECT asks: only the status and the things are
	// decoded, not the PEM that is most of the record.
	var c struct {
		Status string   `json:"status"`
		Things []string `json:"things"`
	}
	found := false
	r.db.View(func(tx *bolt.Tx) error {
		found = get(tx, bucketCerts, id, &c)
		return nil
	})
	if !found {
		return fmt.Errorf("%w: the certificate %s… is not registered", ErrDenied, id[:min(12, len(id))])
	}
	if c.Status != StatusActive {
		return fmt.Errorf("%w: the certificate %s… is %s", ErrDenied, id[:min(12, len(id))], c.Status)
	}
	if !slices.Contains(c.Things, clientID) {
		return fmt.Errorf("%w: client id %q is not a thing this certificate is attached to", ErrDenied, clientID)
	}
	return nil
}

// ListCertificates returns every certificate, oldest first.
func (r *Registry) ListCertificates() ([]Certificate, error) {
	out, err := all[Certificate](r.db, bucketCerts)
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out, err
}

// DeleteCertificate deletes a certificate. As on AWS it must not be ACTIVE
// (ErrCertificateState: make it INACTIVE first) nor attached to a thing
// (ErrConflict: detach it first).
func (r *Registry) DeleteCertificate(id string) error {
	return r.db.Update(func(tx *bolt.Tx) error {
		var c Certificate
		if !get(tx, bucketCerts, id, &c) {
			return fmt.Errorf("%w: certificate %s does not exist", ErrNotFound, id)
		}
		if c.Status == StatusActive {
			return fmt.Errorf("%w: certificate %s is ACTIVE; make it INACTIVE before deleting it", ErrCertificateState, id)
		}
		if len(c.Things) > 0 {
			return fmt.Errorf("%w: certificate %s is attached to %s; detach it first", ErrConflict, id, c.Things[0])
		}
		return tx.Bucket(bucketCerts).Delete([]byte(id))
	})
}

// DetachThingPrincipal detaches a certificate from a thing; detaching one
// that is not attached changes nothing.
func (r *Registry) DetachThingPrincipal(thing, certID string) error {
	return r.db.Update(func(tx *bolt.Tx) error {
		var t Thing
		if !get(tx, bucketThings, thing, &t) {
			return fmt.Errorf("%w: thing %s does not exist", ErrNotFound, thing)
		}
		var c Certificate
		if !get(tx, bucketCerts, certID, &c) {
			return fmt.Errorf("%w: certificate %s does not exist", ErrNotFound, certID)
		}
		c.Things = slices.DeleteFunc(c.Things, func(s string) bool { return s == thing })
		return put(tx, bucketCerts, certID, c)
	})
}

// ThingPrincipals returns the certificates attached to a thing.
func (r *Registry) ThingPrincipals(thing string) ([]Certificate, error) {
	var out []Certificate
	err := r.db.View(func(tx *bolt.Tx) error {
		var t Thing
		if !get(tx, bucketThings, thing, &t) {
			return fmt.Errorf("%w: thing %s does not exist", ErrNotFound, thing)
		}
		return tx.Bucket(bucketCerts).ForEach(func(_, v []byte) error {
			var c Certificate
			if json.Unmarshal(v, &c) == nil && slices.Contains(c.Things, thing) {
				out = append(out, c)
			}
			return nil
		})
	})
	return out, err
}
