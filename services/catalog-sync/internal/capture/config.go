package capture

import (
	"regexp"
	"time"

	"github.com/ecomstream/platform/pkg/config"
)

// Config is the CDC part's configuration.
type Config struct {
	Enabled        bool          `env:"CATALOG_CDC_ENABLED" default:"true" usage:"stream changes by logical replication beside the snapshots; false = snapshots only"`
	Slot           string        `env:"CATALOG_SLOT" default:"ecom_catalog_sync" usage:"logical replication slot (pgoutput, persistent), created at start if missing; one per deployment; also the prefix of each snapshot's temporary slot (<CATALOG_SLOT>_snap_<unix>_<hex>)"`
	Publication    string        `env:"CATALOG_PUBLICATION" default:"" usage:"publication streamed; empty = <CATALOG_SCHEMA>_catalog (what ddl.Storefront creates)"`
	WALWarnBytes   int64         `env:"CATALOG_SLOT_WAL_WARN_BYTES" default:"1073741824" usage:"retained WAL of the slot above which the slot is flagged (ecom_catalog_cdc_slot_wal_over_threshold, a warning in the log); alert on it"`
	StatusInterval time.Duration `env:"CATALOG_CDC_STATUS_INTERVAL" default:"10s" usage:"standby status interval of the replication session (keepalive; a confirm is reported at once)"`
	ConfirmDelay   time.Duration `env:"CATALOG_CDC_CONFIRM_DELAY" default:"0s" usage:"hold each batch this long between its Kafka commit and confirming its LSN to PostgreSQL; for crash tests only, 0 in production"`
}

var ident = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Validate implements config.Validator.
func (c *Config) Validate() error {
	var pub error
	if c.Publication != "" && !ident.MatchString(c.Publication) {
		pub = config.Errorf("CATALOG_PUBLICATION", "%q is not a publication name (lower-case letters, digits, _; at most 63)", c.Publication)
	}
	var slot error
	if !ident.MatchString(c.Slot) {
		slot = config.Errorf("CATALOG_SLOT", "%q is not a slot name (lower-case letters, digits, _; at most 63)", c.Slot)
	}
	return config.First(slot, pub,
		config.Positive("CATALOG_SLOT_WAL_WARN_BYTES", c.WALWarnBytes),
		config.Positive("CATALOG_CDC_STATUS_INTERVAL", c.StatusInterval),
		config.Between("CATALOG_CDC_CONFIRM_DELAY", c.ConfirmDelay, 0, time.Hour))
}

// PublicationFor is the publication to stream for schema.
func (c *Config) PublicationFor(schema string) string {
	if c.Publication != "" {
		return c.Publication
	}
	return schema + "_catalog"
}
