package registry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/awsfota/awsfota/iotjobs"
	bolt "go.etcd.io/bbolt"
)

// MaxGroupsPerThing is how many thing groups a thing may belong to, as on
// AWS.
const MaxGroupsPerThing = 10

// MaxGroupDepth is how deep thing groups may nest, as on AWS.
const MaxGroupDepth = 7

// ThingGroup is a thing group: static (things are added to it) or dynamic
// (its members are the things its fleet-indexing query matches).
type ThingGroup struct {
	Name        string            `json:"thingGroupName"`
	ARN         string            `json:"thingGroupArn"`
	ID          string            `json:"thingGroupId"`
	Version     int64             `json:"version"`
	Description string            `json:"thingGroupDescription,omitempty"`
	Attributes  map[string]string `json:"attributes,omitempty"`
	Parent      string            `json:"parentGroupName,omitempty"`
	CreatedAt   time.Time         `json:"creationDate"`
	// Dynamic groups: the query (see ParseQuery), the index it runs on
	// (AWS_Things) and the query language version.
	Dynamic      bool   `json:"dynamic,omitempty"`
	QueryString  string `json:"queryString,omitempty"`
	IndexName    string `json:"indexName,omitempty"`
	QueryVersion string `json:"queryVersion,omitempty"`
}

// The fleet index and query version dynamic groups use.
const (
	ThingsIndex         = "AWS_Things"
	DefaultQueryVersion = "2017-09-30"
)

// GroupARN returns the ARN of a thing group.
func (r *Registry) GroupARN(name string) string {
	return fmt.Sprintf("arn:aws:iot:%s:%s:thinggroup/%s", r.cfg.Region, r.cfg.AccountID, name)
}

// CreateThingGroup creates a static thing group, under parent if not
// empty. Creating an existing group with the same properties returns it, as
// AWS does; other properties give ErrExists.
func (r *Registry) CreateThingGroup(name, parent, description string, attrs map[string]string) (ThingGroup, error) {
	if err := iotjobs.ValidateThingName(name); err != nil {
		return ThingGroup{}, fmt.Errorf("%w: thing group name: %v", ErrInvalid, err)
	}
	var out ThingGroup
	err := r.db.Update(func(tx *bolt.Tx) error {
		if get(tx, bucketGroups, name, &out) {
			if out.Dynamic || out.Parent != parent || out.Description != description || !mapsEqual(out.Attributes, attrs) {
				return fmt.Errorf("%w: thing group %s exists with other properties", ErrExists, name)
			}
			return nil
		}
		if parent != "" {
			var p ThingGroup
			if !get(tx, bucketGroups, parent, &p) {
				return fmt.Errorf("%w: the parent thing group %s does not exist; create it first", ErrInvalid, parent)
			}
			if p.Dynamic {
				return fmt.Errorf("%w: %s is a dynamic thing group, which cannot have child groups", ErrInvalid, parent)
			}
			if len(ancestors(tx, parent))+1 >= MaxGroupDepth {
				return fmt.Errorf("%w: thing groups nest at most %d deep", ErrInvalid, MaxGroupDepth)
			}
		}
		seq, _ := tx.Bucket(bucketGroups).NextSequence()
		out = ThingGroup{Name: name, ARN: r.GroupARN(name), ID: fmt.Sprintf("%08x-0000-4000-9000-%012x", seq, seq), Version: 1,
			Description: description, Attributes: attrs, Parent: parent, CreatedAt: r.cfg.Clock.Now().UTC()}
		return put(tx, bucketGroups, name, out)
	})
	return out, err
}

// DescribeThingGroup returns a thing group.
func (r *Registry) DescribeThingGroup(name string) (ThingGroup, error) {
	var g ThingGroup
	err := r.db.View(func(tx *bolt.Tx) error {
		if !get(tx, bucketGroups, name, &g) {
			return fmt.Errorf("%w: thing group %s does not exist", ErrNotFound, name)
		}
		return nil
	})
	return g, err
}

// ListThingGroups returns every thing group, by name.
func (r *Registry) ListThingGroups() ([]ThingGroup, error) {
	return all[ThingGroup](r.db, bucketGroups)
}

// DeleteThingGroup deletes a thing group that has no child groups; its
// things leave it. Deleting a group that does not exist succeeds, as on AWS.
func (r *Registry) DeleteThingGroup(name string) error {
	return r.db.Update(func(tx *bolt.Tx) error {
		var g ThingGroup
		if !get(tx, bucketGroups, name, &g) {
			return nil
		}
		var child string
		tx.Bucket(bucketGroups).ForEach(func(k, v []byte) error {
			var c ThingGroup
			if json.Unmarshal(v, &c) == nil && c.Parent == name {
				child = c.Name
			}
			return nil
		})
		if child != "" {
			return fmt.Errorf("%w: thing group %s has the child group %s; delete the children first", ErrConflict, name, child)
		}
		for _, th := range members(tx, name) {
			if err := unlink(tx, th, name); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketGroups).Delete([]byte(name))
	})
}

// ancestors returns the parents of a group, nearest first.
func ancestors(tx *bolt.Tx, name string) []string {
	var out []string
	for {
		var g ThingGroup
		if !get(tx, bucketGroups, name, &g) || g.Parent == "" || slices.Contains(out, g.Parent) {
			return out
		}
		out = append(out, g.Parent)
		name = g.Parent
	}
}

func root(tx *bolt.Tx, name string) string {
	if a := ancestors(tx, name); len(a) > 0 {
		return a[len(a)-1]
	}
	return name
}

// directGroups returns the groups a thing was added to.
func directGroups(tx *bolt.Tx, thing string) []string {
	var out []string
	prefix := []byte(thing + "\x00")
	c := tx.Bucket(bucketThingGroups).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		out = append(out, string(k[len(prefix):]))
	}
	return out
}

// members returns the things added to a group itself.
func members(tx *bolt.Tx, group string) []string {
	var out []string
	prefix := []byte(group + "\x00")
	c := tx.Bucket(bucketMembers).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		out = append(out, string(k[len(prefix):]))
	}
	return out
}

func unlink(tx *bolt.Tx, thing, group string) error {
	if err := tx.Bucket(bucketMembers).Delete([]byte(group + "\x00" + thing)); err != nil {
		return err
	}
	return tx.Bucket(bucketThingGroups).Delete([]byte(thing + "\x00" + group))
}

// AddThingToThingGroup adds a thing to a static group. As on AWS, a thing
// belongs to at most 10 groups, and to at most one group of a hierarchy.
// Adding it again changes nothing.
func (r *Registry) AddThingToThingGroup(thing, group string) error {
	return r.db.Batch(func(tx *bolt.Tx) error {
		var t Thing
		if !get(tx, bucketThings, thing, &t) {
			return fmt.Errorf("%w: thing %s does not exist", ErrNotFound, thing)
		}
		var g ThingGroup
		if !get(tx, bucketGroups, group, &g) {
			return fmt.Errorf("%w: thing group %s does not exist", ErrNotFound, group)
		}
		if g.Dynamic {
			return fmt.Errorf("%w: %s is a dynamic thing group: its query decides its members (update the thing's attributes, or the query)", ErrInvalid, group)
		}
		have := directGroups(tx, thing)
		if slices.Contains(have, group) {
			return nil
		}
		if len(have) >= MaxGroupsPerThing {
			return fmt.Errorf("%w: thing %s already belongs to %d thing groups, the most allowed", ErrInvalid, thing, MaxGroupsPerThing)
		}
		rt := root(tx, group)
		for _, h := range have {
			if root(tx, h) == rt {
				return fmt.Errorf("%w: thing %s is already in %s, of the same hierarchy as %s; a thing may be in one group of a hierarchy", ErrInvalid, thing, h, group)
			}
		}
		if err := tx.Bucket(bucketMembers).Put([]byte(group+"\x00"+thing), nil); err != nil {
			return err
		}
		return tx.Bucket(bucketThingGroups).Put([]byte(thing+"\x00"+group), nil)
	})
}

// RemoveThingFromThingGroup removes a thing from a group; removing a thing
// that is not in it changes nothing.
func (r *Registry) RemoveThingFromThingGroup(thing, group string) error {
	return r.db.Update(func(tx *bolt.Tx) error {
		var t Thing
		if !get(tx, bucketThings, thing, &t) {
			return fmt.Errorf("%w: thing %s does not exist", ErrNotFound, thing)
		}
		var g ThingGroup
		if !get(tx, bucketGroups, group, &g) {
			return fmt.Errorf("%w: thing group %s does not exist", ErrNotFound, group)
		}
		if g.Dynamic {
			return fmt.Errorf("%w: %s is a dynamic thing group: its query decides its members", ErrInvalid, group)
		}
		return unlink(tx, thing, group)
	})
}

// ListThingsInThingGroup returns the things in a group, with recursive
// those of its descendants too, by name.
func (r *Registry) ListThingsInThingGroup(group string, recursive bool) ([]string, error) {
	var out []string
	err := r.db.View(func(tx *bolt.Tx) error {
		var g ThingGroup
		if !get(tx, bucketGroups, group, &g) {
			return fmt.Errorf("%w: thing group %s does not exist", ErrNotFound, group)
		}
		if g.Dynamic {
			m, err := dynamicMembers(tx, g)
			out = m
			return err
		}
		groups := []string{group}
		if recursive {
			tx.Bucket(bucketGroups).ForEach(func(k, _ []byte) error {
				if slices.Contains(ancestors(tx, string(k)), group) {
					groups = append(groups, string(k))
				}
				return nil
			})
		}
		for _, gr := range groups {
			out = append(out, members(tx, gr)...)
		}
		return nil
	})
	sort.Strings(out)
	return slices.Compact(out), err
}

// ListThingGroupsForThing returns the groups a thing was added to, by name.
func (r *Registry) ListThingGroupsForThing(thing string) ([]ThingGroup, error) {
	var out []ThingGroup
	err := r.db.View(func(tx *bolt.Tx) error {
		var t Thing
		if !get(tx, bucketThings, thing, &t) {
			return fmt.Errorf("%w: thing %s does not exist", ErrNotFound, thing)
		}
		for _, name := range directGroups(tx, thing) {
			var g ThingGroup
			if get(tx, bucketGroups, name, &g) {
				out = append(out, g)
			}
		}
		dyn, err := matchingDynamic(tx, t)
		out = append(out, dyn...)
		return err
	})
	return out, err
}

// ThingsInGroup returns the things in a group and its descendants, for
// jobs that target the group.
func (r *Registry) ThingsInGroup(group string) ([]string, error) {
	return r.ListThingsInThingGroup(group, true)
}

// GroupsOfThing returns the groups a thing belongs to, directly or through
// a descendant group: the groups whose jobs reach it. An unknown thing
// belongs to none.
func (r *Registry) GroupsOfThing(thing string) ([]string, error) {
	var out []string
	err := r.db.View(func(tx *bolt.Tx) error {
		for _, g := range directGroups(tx, thing) {
			out = append(out, g)
			out = append(out, ancestors(tx, g)...)
		}
		var t Thing
		if !get(tx, bucketThings, thing, &t) {
			return nil
		}
		dyn, err := matchingDynamic(tx, t)
		for _, g := range dyn {
			out = append(out, g.Name)
		}
		return err
	})
	sort.Strings(out)
	return slices.Compact(out), err
}

// queryThing is what a query sees of a thing.
func queryThing(tx *bolt.Tx, t Thing) QueryThing {
	return QueryThing{Name: t.Name, ID: t.ID, Attributes: t.Attributes, Groups: directGroups(tx, t.Name)}
}

// dynamicMembers returns the things a dynamic group's query matches, by
// name.
func dynamicMembers(tx *bolt.Tx, g ThingGroup) ([]string, error) {
	q, err := ParseQuery(g.QueryString)
	if err != nil {
		return nil, fmt.Errorf("thing group %s: %w", g.Name, err)
	}
	var out []string
	err = tx.Bucket(bucketThings).ForEach(func(_, v []byte) error {
		var t Thing
		if err := json.Unmarshal(v, &t); err != nil {
			return err
		}
		if q.Match(queryThing(tx, t)) {
			out = append(out, t.Name)
		}
		return nil
	})
	return out, err
}

// matchingDynamic returns the dynamic groups whose query a thing matches.
func matchingDynamic(tx *bolt.Tx, t Thing) ([]ThingGroup, error) {
	var out []ThingGroup
	qt := queryThing(tx, t)
	err := tx.Bucket(bucketGroups).ForEach(func(_, v []byte) error {
		var g ThingGroup
		if err := json.Unmarshal(v, &g); err != nil || !g.Dynamic {
			return err
		}
		q, err := ParseQuery(g.QueryString)
		if err != nil {
			return nil // stored by CreateDynamicThingGroup, which parsed it
		}
		if q.Match(qt) {
			out = append(out, g)
		}
		return nil
	})
	return out, err
}

// DynamicGroupSpec describes a dynamic thing group.
type DynamicGroupSpec struct {
	Name        string
	Description string
	Attributes  map[string]string
	// QueryString is a fleet-indexing query of the subset ParseQuery
	// reads; IndexName must be AWS_Things (the default), QueryVersion
	// 2017-09-30 (the default).
	QueryString  string
	IndexName    string
	QueryVersion string
}

func (spec *DynamicGroupSpec) check() error {
	if spec.IndexName == "" {
		spec.IndexName = ThingsIndex
	}
	if spec.QueryVersion == "" {
		spec.QueryVersion = DefaultQueryVersion
	}
	if spec.IndexName != ThingsIndex {
		return fmt.Errorf("%w: index %s does not exist: dynamic thing groups use %s", ErrNotFound, spec.IndexName, ThingsIndex)
	}
	if spec.QueryVersion != DefaultQueryVersion {
		return fmt.Errorf("%w: queryVersion %q: use %s", ErrInvalid, spec.QueryVersion, DefaultQueryVersion)
	}
	_, err := ParseQuery(spec.QueryString)
	return err
}

// CreateDynamicThingGroup creates a dynamic thing group. Errors wrap
// ErrInvalid, ErrInvalidQuery, ErrNotFound (the index) or ErrExists.
func (r *Registry) CreateDynamicThingGroup(spec DynamicGroupSpec) (ThingGroup, error) {
	if err := iotjobs.ValidateThingName(spec.Name); err != nil {
		return ThingGroup{}, fmt.Errorf("%w: thing group name: %v", ErrInvalid, err)
	}
	if err := spec.check(); err != nil {
		return ThingGroup{}, err
	}
	var out ThingGroup
	err := r.db.Update(func(tx *bolt.Tx) error {
		if get(tx, bucketGroups, spec.Name, &out) {
			return fmt.Errorf("%w: thing group %s exists", ErrExists, spec.Name)
		}
		seq, _ := tx.Bucket(bucketGroups).NextSequence()
		out = ThingGroup{Name: spec.Name, ARN: r.GroupARN(spec.Name), ID: fmt.Sprintf("%08x-0000-4000-9000-%012x", seq, seq), Version: 1,
			Description: spec.Description, Attributes: spec.Attributes, CreatedAt: r.cfg.Clock.Now().UTC(),
			Dynamic: true, QueryString: spec.QueryString, IndexName: spec.IndexName, QueryVersion: spec.QueryVersion}
		return put(tx, bucketGroups, spec.Name, out)
	})
	return out, err
}

// UpdateDynamicThingGroup changes a dynamic group's query and properties
// (empty strings and a nil map keep what is there). expectedVersion (when
// not 0) must match. The version increases.
func (r *Registry) UpdateDynamicThingGroup(spec DynamicGroupSpec, expectedVersion int64) (ThingGroup, error) {
	var g ThingGroup
	err := r.db.Update(func(tx *bolt.Tx) error {
		if !get(tx, bucketGroups, spec.Name, &g) {
			return fmt.Errorf("%w: thing group %s does not exist", ErrNotFound, spec.Name)
		}
		if !g.Dynamic {
			return fmt.Errorf("%w: %s is a static thing group: use UpdateThingGroup", ErrInvalid, spec.Name)
		}
		if expectedVersion != 0 && expectedVersion != g.Version {
			return fmt.Errorf("%w: thing group %s is at version %d, not %d", ErrVersionConflict, spec.Name, g.Version, expectedVersion)
		}
		if spec.QueryString == "" {
			spec.QueryString = g.QueryString
		}
		if spec.IndexName == "" {
			spec.IndexName = g.IndexName
		}
		if spec.QueryVersion == "" {
			spec.QueryVersion = g.QueryVersion
		}
		if err := spec.check(); err != nil {
			return err
		}
		g.QueryString, g.IndexName, g.QueryVersion = spec.QueryString, spec.IndexName, spec.QueryVersion
		if spec.Description != "" {
			g.Description = spec.Description
		}
		if spec.Attributes != nil {
			g.Attributes = spec.Attributes
		}
		g.Version++
		return put(tx, bucketGroups, spec.Name, g)
	})
	return g, err
}

// DeleteDynamicThingGroup deletes a dynamic thing group; one that does not
// exist is not an error, as on AWS.
func (r *Registry) DeleteDynamicThingGroup(name string, expectedVersion int64) error {
	return r.db.Update(func(tx *bolt.Tx) error {
		var g ThingGroup
		if !get(tx, bucketGroups, name, &g) {
			return nil
		}
		if !g.Dynamic {
			return fmt.Errorf("%w: %s is a static thing group: use DeleteThingGroup", ErrInvalid, name)
		}
		if expectedVersion != 0 && expectedVersion != g.Version {
			return fmt.Errorf("%w: thing group %s is at version %d, not %d", ErrVersionConflict, name, g.Version, expectedVersion)
		}
		return tx.Bucket(bucketGroups).Delete([]byte(name))
	})
}
