// Package events holds the Go types of the platform's Avro contracts. The
// types are generated from the current version of each schema in proto/avro;
// run `go generate ./events` after adding a schema version, never edit
// events_gen.go by hand.
package events

//go:generate go tool avrogen -pkg events -o events_gen.go -tags json:snake ../../proto/avro/click_event.v2.avsc ../../proto/avro/order.v2.avsc ../../proto/avro/product_change.v2.avsc ../../proto/avro/customer_change.v1.avsc ../../proto/avro/dead_letter.v1.avsc
