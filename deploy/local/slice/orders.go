package slice

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// OrdersOptions configure the orders path of a slice: the storefront
// simulator (deploy/local/cmd/storefront) and ingest-orders, whose orders go
// through the slice's validator and bq-writer.
type OrdersOptions struct {
	// Speed is the simulator's shop seconds per wall second (0 = 1). Above 1 the
	// validator's ORDER_MAX_AHEAD is raised to match, since updated_at (shop
	// time) then runs ahead of received_at (wall time).
	Speed float64
	// NoWebhooks turns the simulator's webhooks off (on by default: poll and
	// webhook both deliver every version, as in production).
	NoWebhooks bool
	// PollInterval is ingest-orders' ORDERS_POLL_INTERVAL (0 = 2s).
	PollInterval time.Duration
	// Args are further storefront flags, e.g. "-rate=600", "-max-orders=3000",
	// "-fault-rate=0.05"; they win over the slice's environment.
	Args []string
}

// Storefront is a running slice's simulator API.
type Storefront struct {
	URL           string // base URL, e.g. http://127.0.0.1:40123
	Token         string // bearer token of its API
	WebhookSecret string // "" when webhooks are off
	VersionsFile  string // the simulator's own log of every version it made (JSON Lines)
	// OperatorToken is ingest-orders' HTTP_OPERATOR_TOKEN (POST /v1/backfill).
	OperatorToken string
}

// addOrders adds the storefront's and ingest-orders' environment and the
// validator's and bq-writer's settings the orders path needs.
func (s *Slice) addOrders(env map[string][]string, addrs map[string]string) {
	o, prefix := s.Opts.Orders, s.Opts.Prefix
	s.Topics.OrdersCursor = prefix + "ecom.ingest-orders.cursor.v1"
	st := &Storefront{
		URL: "http://" + addrs["storefront"], Token: "sf_" + randomHex(16),
		VersionsFile: filepath.Join(s.Opts.RunDir, "storefront-versions.jsonl"), OperatorToken: "op_" + randomHex(16),
	}
	if !o.NoWebhooks {
		st.WebhookSecret = "whsec_" + randomHex(16)
	}
	s.Storefront = st
	speed := o.Speed
	if speed <= 0 {
		speed = 1
	}
	poll := o.PollInterval
	if poll <= 0 {
		poll = 2 * time.Second
	}
	sf := []string{
		"STOREFRONT_ADDR=" + addrs["storefront"], "STOREFRONT_TOKEN=" + st.Token,
		"STOREFRONT_PAGE_TOKEN_SECRET=" + randomHex(32), // page tokens survive a restart of the simulator
		"STOREFRONT_SPEED=" + strconv.FormatFloat(speed, 'g', -1, 64),
		"STOREFRONT_VERSIONS_OUT=" + st.VersionsFile,
	}
	if st.WebhookSecret != "" {
		sf = append(sf, "STOREFRONT_WEBHOOK_URL=http://"+addrs["ingest-orders"]+"/v1/webhooks/orders", "STOREFRONT_WEBHOOK_SECRET="+st.WebhookSecret)
	}
	env["storefront"] = sf
	ing := []string{
		"ORDERS_TOPIC=" + s.Topics.Orders, "ORDERS_CURSOR_TOPIC=" + s.Topics.OrdersCursor,
		// The cursor name is part of the fixed transactional id: one per slice,
		// so slices never fence each other or the stack's own ingest-orders.
		"ORDERS_CURSOR_NAME=" + prefix + "live",
		"STOREFRONT_URL=" + st.URL, "STOREFRONT_TOKEN=" + st.Token,
		"ORDERS_POLL_INTERVAL=" + poll.String(), "HTTP_OPERATOR_TOKEN=" + st.OperatorToken,
	}
	if st.WebhookSecret != "" {
		ing = append(ing, "WEBHOOK_SECRET="+st.WebhookSecret)
	}
	env["ingest-orders"] = ing
	if speed > 1 {
		// Shop time runs ahead of wall time by (speed-1) x the run's length: allow a
		// day of wall time, so order.freshness judges only real clock trouble.
		// Capped: above a speed of ~106751 the product overflows time.Duration
		// (negative, which the validator refuses).
		ahead := maxAhead
		if d := speed * float64(24*time.Hour); d < float64(maxAhead) {
			ahead = time.Duration(d)
		}
		env["validator"] = append(env["validator"], "ORDER_MAX_AHEAD="+ahead.String())
	}
}

// maxAhead caps the validator's ORDER_MAX_AHEAD: a hundred years of shop time.
const maxAhead = 100 * 365 * 24 * time.Hour

// StorefrontDo calls the simulator's API with its token: method, path (e.g.
// "/v1/admin/stats"), a JSON body (nil = none), and decodes a JSON answer into
// out (nil = discard). A non-2xx answer is an error with its body.
func (s *Slice) StorefrontDo(ctx context.Context, method, path string, body, out any) error {
	if s.Storefront == nil {
		return fmt.Errorf("slice: no storefront (Options.Orders is nil)")
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.Storefront.URL+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.Storefront.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("storefront %s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// StorefrontVersions reads the simulator's version log (Storefront.VersionsFile)
// and calls fn with each line's raw JSON (a storefront.Version), in the order
// the versions were made.
func (s *Slice) StorefrontVersions(fn func(line []byte) error) error {
	if s.Storefront == nil {
		return fmt.Errorf("slice: no storefront (Options.Orders is nil)")
	}
	f, err := os.Open(s.Storefront.VersionsFile)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		if err := fn(sc.Bytes()); err != nil {
			return err
		}
	}
	return sc.Err()
}
