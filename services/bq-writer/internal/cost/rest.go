package cost

import (
	"net/http"
	"strings"
)

// Transport returns a RoundTripper that counts every BigQuery REST call it passes to base
// (http.DefaultTransport when nil).
func (m *Meter) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return roundTripper{m: m, base: base}
}

type roundTripper struct {
	m    *Meter
	base http.RoundTripper
}

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	rt.m.Call(req.Context(), RESTAPI(req.Method, req.URL.Path))
	return rt.base.RoundTrip(req)
}

// RESTAPI names a BigQuery REST call by its method and path (…/bigquery/v2/projects/p/…).
func RESTAPI(method, path string) string {
	_, rest, ok := strings.Cut(path, "/projects/")
	if !ok {
		return APIRESTOther
	}
	parts := strings.Split(strings.Trim(rest, "/"), "/") // p, resource, id, sub-resource, id, ...
	if len(parts) < 2 {
		return APIRESTOther
	}
	switch parts[1] {
	case "jobs", "queries":
		return APIQuery
	case "datasets":
		if len(parts) < 4 || parts[3] != "tables" {
			return APIDatasets
		}
		switch {
		case len(parts) == 4 && method == http.MethodGet:
			return APITablesList
		case len(parts) == 5 && method == http.MethodGet:
			return APITablesGet
		case len(parts) == 5 && (method == http.MethodPatch || method == http.MethodPut):
			return APITablesUpdate
		}
	}
	return APIRESTOther
}
