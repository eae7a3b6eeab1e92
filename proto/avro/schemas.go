// Package avro holds the platform's Avro data contracts. Every schema version
// ever published is kept as <entity>.v<N>.avsc so compatibility between
// consecutive versions can be tested and old writer schemas can be resolved.
package avro

import (
	"embed"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
)

//go:embed *.avsc
var files embed.FS

// Entity names used as schema file prefixes.
const (
	ClickEvent     = "click_event"
	Order          = "order"
	ProductChange  = "product_change"
	CustomerChange = "customer_change"
	DeadLetter     = "dead_letter"
)

var fileName = regexp.MustCompile(`^([a-z_]+)\.v([0-9]+)\.avsc$`)

// Version is one schema version of an entity as kept in the repository.
type Version struct {
	Entity  string
	Version int
	Schema  string
}

// Versions returns every kept version of entity, oldest first.
func Versions(entity string) ([]Version, error) {
	all, err := All()
	if err != nil {
		return nil, err
	}
	var out []Version
	for _, v := range all {
		if v.Entity == entity {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("avro: no schema for entity %q", entity)
	}
	return out, nil
}

// Latest returns the current (reader) schema of entity.
func Latest(entity string) (Version, error) {
	vs, err := Versions(entity)
	if err != nil {
		return Version{}, err
	}
	return vs[len(vs)-1], nil
}

// All returns every kept schema version, sorted by entity then version.
func All() ([]Version, error) {
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		return nil, err
	}
	var out []Version
	for _, e := range entries {
		m := fileName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("avro: unexpected schema file name %q (want <entity>.v<N>.avsc)", e.Name())
		}
		n, _ := strconv.Atoi(m[2])
		b, err := files.ReadFile(e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, Version{Entity: m[1], Version: n, Schema: string(b)})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Entity != out[j].Entity {
			return out[i].Entity < out[j].Entity
		}
		return out[i].Version < out[j].Version
	})
	return out, nil
}
