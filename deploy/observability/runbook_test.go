package observability

import (
	"strings"
	"testing"
)

func TestSlug(t *testing.T) {
	tests := []struct {
		give, want string
	}{
		// Headings of docs/runbooks, with the anchors their links use.
		{"Consumer lag growing", "consumer-lag-growing"},
		{"Cursor lag growing / `/readyz` says `last_poll`", "cursor-lag-growing--readyz-says-last_poll"},
		{"`/readyz` says `cdc`, or the slot retains WAL", "readyz-says-cdc-or-the-slot-retains-wal"},
		{"Write failing (transient)", "write-failing-transient"},
		{"Warehouse write failing, disk full, DuckDB locked", "warehouse-write-failing-disk-full-duckdb-locked"},
		{"Stuck read_committed after an upstream crash", "stuck-read_committed-after-an-upstream-crash"},
		{"DQ pass rate below 99%", "dq-pass-rate-below-99"},
		{`A service stops at start: "schema registry refused the schema"`, "a-service-stops-at-start-schema-registry-refused-the-schema"},
		{"Collector: 413 for one event over MAX_EVENT_BYTES", "collector-413-for-one-event-over-max_event_bytes"},
		{"The service exits with a fencing error (`PRODUCER_FENCED`, `INVALID_PRODUCER_EPOCH`)", "the-service-exits-with-a-fencing-error-producer_fenced-invalid_producer_epoch"},
		{"A run waits before it reads anything (`snapshot waits for the transactions running ...`)", "a-run-waits-before-it-reads-anything-snapshot-waits-for-the-transactions-running-"},
		{"It will not start: `config: STOREFRONT_TOKEN: set it for a storefront that is not on a loopback address`", "it-will-not-start-config-storefront_token-set-it-for-a-storefront-that-is-not-on-a-loopback-address"},
		{"7.3 Alerts and dashboards (planned)", "73-alerts-and-dashboards-planned"},
		// A link counts as its text; other letters than ASCII stay.
		{"See [the guide](guide.md#x) first", "see-the-guide-first"},
		{"Größe → Über", "größe--über"},
		{"  padded  ", "padded"},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			if got := Slug(tt.give); got != tt.want {
				t.Errorf("Slug(%q) = %q, want %q", tt.give, got, tt.want)
			}
		})
	}
}

func TestReadHeadings(t *testing.T) {
	tests := []struct {
		name string
		give string
		want []string // "level anchor"
	}{
		{
			name: "levels and trailing hashes",
			give: "# Runbook: x\n\n## Not ready ##\n### Write failing (transient)\n#### Deep\n",
			want: []string{"1 runbook-x", "2 not-ready", "3 write-failing-transient", "4 deep"},
		},
		{
			name: "fenced code is not headings",
			give: "## A\n```sh\n# from the repository root\n## not a heading\n```\n~~~\n# also not\n~~~\n## B\n",
			want: []string{"2 a", "2 b"},
		},
		{
			name: "a longer fence is closed only by as long a one",
			give: "````\n```\n# inside\n````\n## After\n",
			want: []string{"2 after"},
		},
		{
			name: "repeats numbered as GitHub does",
			give: "## Not ready\n## Not ready\n### Not ready\n",
			want: []string{"2 not-ready", "2 not-ready-1", "3 not-ready-2"},
		},
		{
			name: "not headings: no space, indented code",
			give: "#hashtag\n    ## indented code\n## Real\n",
			want: []string{"2 real"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs, err := ReadHeadings(strings.NewReader(tt.give))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, h := range hs {
				got = append(got, strings.Join([]string{string(rune('0' + h.Level)), h.Anchor}, " "))
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("headings = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReadAlertsTable(t *testing.T) {
	const doc = "# Runbook\n\n## What to look at\n\n| `NotThis` | x | [y](#y) |\n\n" +
		"## Alerts\n\nText.\n\n| alert | severity | fires when | section |\n| --- | --- | --- | --- |\n" +
		"| `ServiceDown` | page | `up == 0` | [Service down](#service-down) |\n" +
		"| `NoLink` | ticket | x | somewhere |\n\n### Sub\n\n| `InSub` | page | x | [S](#s) |\n\n## Next\n\n| `After` | page | x | [A](#a) |\n"
	rows, ok, err := ReadAlertsTable(strings.NewReader(doc))
	if err != nil || !ok {
		t.Fatalf("ReadAlertsTable: ok %v, err %v", ok, err)
	}
	want := []AlertsTableRow{{"ServiceDown", "service-down", 13}, {"NoLink", "", 14}, {"InSub", "s", 18}}
	if len(rows) != len(want) {
		t.Fatalf("rows = %+v, want %+v", rows, want)
	}
	for i := range want {
		if rows[i] != want[i] {
			t.Errorf("row %d = %+v, want %+v", i, rows[i], want[i])
		}
	}
	if _, ok, _ := ReadAlertsTable(strings.NewReader("# x\n## Other\n")); ok {
		t.Error("a file without ## Alerts: ok = true")
	}
}
