package reconcile

import (
	"context"
	"fmt"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/deadletter"
	protoavro "github.com/ecomstream/platform/proto/avro"
)

// Sources are the sources a reconciliation covers, in the order reports print them.
var Sources = []string{SourceClickstream, SourceOrders, SourceCatalog}

// ForSource returns source's Reconcile on the topics and groups of prefix (a slice's, e.g.
// "e2e-1234."; "" = the platform's names), reading the log through log and the DuckDB warehouse
// through wh, with codecs from reg. A codec's subject must exist: the path has produced.
func ForSource(ctx context.Context, source, prefix string, log *Log, wh *QueryAPI, reg *avroserde.Registry) (func(context.Context, Window) (*Report, error), error) {
	dlq, err := reg.Codec(ctx, avroserde.SubjectFor(deadletter.Topic), protoavro.DeadLetter)
	if err != nil {
		return nil, err
	}
	switch source {
	case SourceClickstream:
		c := &Clickstream{Log: log, Warehouse: wh, DeadLetter: dlq}
		c.ClickstreamNames(prefix)
		if c.Click, err = reg.Codec(ctx, avroserde.SubjectFor(c.Events), protoavro.ClickEvent); err != nil {
			return nil, err
		}
		return c.Reconcile, nil
	case SourceOrders:
		o := &Orders{Log: log, Warehouse: wh, DeadLetter: dlq}
		o.OrdersNames(prefix)
		if o.Order, err = reg.Codec(ctx, avroserde.SubjectFor(o.Topic), protoavro.Order); err != nil {
			return nil, err
		}
		return o.Reconcile, nil
	case SourceCatalog:
		c := &Catalog{Log: log, Warehouse: wh, DeadLetter: dlq}
		c.CatalogNames(prefix)
		for i, schema := range []string{protoavro.ProductChange, protoavro.CustomerChange} {
			if c.Entities[i].Codec, err = reg.Codec(ctx, avroserde.SubjectFor(c.Entities[i].Topic), schema); err != nil {
				return nil, err
			}
		}
		return c.Reconcile, nil
	}
	return nil, fmt.Errorf("reconcile: no source %q (want clickstream, orders or catalog)", source)
}
