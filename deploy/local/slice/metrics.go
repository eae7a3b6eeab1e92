package slice

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Series is one Prometheus sample: metric name, labels and value.
type Series struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Scrape reads a service's /metrics (Prometheus text format) and returns the
// samples whose metric name starts with prefix.
func Scrape(ctx context.Context, addr, prefix string) ([]Series, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", addr, resp.Status)
	}
	var out []Series
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || !strings.HasPrefix(line, prefix) {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		head := line[:sp]
		s := Series{Name: head, Labels: map[string]string{}, Value: v}
		if i := strings.IndexByte(head, '{'); i >= 0 {
			s.Name = head[:i]
			for _, kv := range splitLabels(strings.TrimSuffix(head[i+1:], "}")) {
				k, val, _ := strings.Cut(kv, "=")
				s.Labels[k] = strings.Trim(val, `"`)
			}
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

// splitLabels splits a="x",b="y,z" on the commas between labels.
func splitLabels(s string) []string {
	var out []string
	inQuote, start := false, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			inQuote = !inQuote
		case ',':
			if !inQuote {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// Sum adds the values of the samples named name whose labels include match.
func Sum(series []Series, name string, match map[string]string) float64 {
	var total float64
next:
	for _, s := range series {
		if s.Name != name {
			continue
		}
		for k, v := range match {
			if s.Labels[k] != v {
				continue next
			}
		}
		total += s.Value
	}
	return total
}
