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

// ThingGroup is a static thing group.
type ThingGroup struct {
	Name        string            `json:"thingGroupName"`
	ARN         string            `json:"thingGroupArn"`
	ID          string            `json:"thingGroupId"`
	Version     int64             `json:"version"`
	Description string            `json:"thingGroupDescription,omitempty"`
	Attributes  map[string]string `json:"attributes,omitempty"`
	Parent      string            `json:"parentGroupName,omitempty"`
	CreatedAt   time.Time         `json:"creationDate"`
}

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
			if out.Parent != parent || out.Description != description || !mapsEqual(out.Attributes, attrs) {
				return fmt.Errorf("%w: thing group %s exists with other properties", ErrExists, name)
			}
			return nil
		}
		if parent != "" {
			var p ThingGroup
			if !get(tx, bucketGroups, parent, &p) {
				return fmt.Errorf("%w: the parent thing group %s does not exist; create it first", ErrInvalid, parent)
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
	return r.db.Update(func(tx *bolt.Tx) error {
		var t Thing
		if !get(tx, bucketThings, thing, &t) {
			return fmt.Errorf("%w: thing %s does not exist", ErrNotFound, thing)
		}
		var g ThingGroup
		if !get(tx, bucketGroups, group, &g) {
			return fmt.Errorf("%w: thing group %s does not exist", ErrNotFound, group)
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
		return nil
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
		return nil
	})
	sort.Strings(out)
	return slices.Compact(out), err
}
