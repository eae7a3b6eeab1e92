package storefront

import (
	"errors"
	"fmt"

	"github.com/ecomstream/platform/deploy/local/seed"
)

// PlaceRequest is an order placed from outside the simulation (POST
// /v1/admin/orders), e.g. by whatever turns clickstream purchases into
// orders, so a purchase event's order_id names a real order.
type PlaceRequest struct {
	ID         string      `json:"id,omitempty"` // "" = a new "o-<uuid>"
	CustomerID string      `json:"customer_id"`
	Lines      []PlaceLine `json:"lines"`
}

// PlaceLine is one line of a PlaceRequest.
type PlaceLine struct {
	ProductID string `json:"product_id"`
	Quantity  int64  `json:"quantity"`
}

var (
	// ErrPlace is wrapped by every error of Place: the request was wrong.
	ErrPlace = errors.New("cannot place order")
	// ErrExists (which wraps ErrPlace) is Place's error for an id that is
	// already an order: for a client that retries, the order is placed.
	ErrExists = fmt.Errorf("%w: the order exists", ErrPlace)
)

// Place creates a well-formed order now, in the customer's currency at the
// seed's prices, and runs its life cycle like any other order.
func (s *Simulator) Place(req PlaceRequest) (Order, error) {
	s.mu.Lock()
	if s.customerByID == nil {
		s.customerByID = make(map[string]int, len(s.cfg.IDs.Customers))
		for i, c := range s.cfg.IDs.Customers {
			s.customerByID[c.CustomerID] = i
		}
		s.productByID = make(map[string]int, len(s.cfg.IDs.Products))
		for i, p := range s.cfg.IDs.Products {
			s.productByID[p.ProductID] = i
		}
	}
	ci, ok := s.customerByID[req.CustomerID]
	var err error
	switch {
	case !ok:
		err = fmt.Errorf("%w: customer %q is not in the id seed", ErrPlace, req.CustomerID)
	case len(req.Lines) == 0:
		err = fmt.Errorf("%w: no lines", ErrPlace)
	case req.ID != "" && s.orders[req.ID] != nil:
		err = fmt.Errorf("%w: %s", ErrExists, req.ID)
	}
	if err != nil {
		s.mu.Unlock()
		return Order{}, err
	}
	cust := s.cfg.IDs.Customers[ci]
	o := Order{ID: req.ID, CustomerID: cust.CustomerID, Status: StatusCreated, Currency: seed.CurrencyFor(cust.Country)}
	if o.ID == "" {
		o.ID = "o-" + seed.UUID(s.rng)
	}
	for _, l := range req.Lines {
		pi, ok := s.productByID[l.ProductID]
		if !ok || l.Quantity < 1 {
			s.mu.Unlock()
			return Order{}, fmt.Errorf("%w: line %q x %d: unknown product or quantity below 1", ErrPlace, l.ProductID, l.Quantity)
		}
		addLine(&o, s.cfg.IDs.Products[pi], l.Quantity)
	}
	price(&o)
	s.placed++
	st := &state{o: o}
	first := len(s.versions)
	s.open(st, s.cfg.Clock.Now())
	out := st.o.clone()
	s.emit(first) // unlocks
	return out, nil
}
