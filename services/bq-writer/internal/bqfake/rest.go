package bqfake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"

	bq "google.golang.org/api/bigquery/v2"
	"google.golang.org/api/option"
)

// REST is an httptest fake of the BigQuery REST API (v2) calls bq-writer's catalog makes:
// datasets get/insert/delete, tables get/insert/patch (the etag checked: 412 on a mismatch, as
// BigQuery answers), and query jobs (jobs.insert, jobs.get, jobs.getQueryResults, jobs.query).
//
// Queries are not evaluated. Every job's SQL is recorded; DDL takes effect on the catalog the
// fake keeps: CREATE TABLE [IF NOT EXISTS] creates the table with the columns it declares,
// CREATE [OR REPLACE] VIEW records a view, ALTER TABLE ... ADD COLUMN [IF NOT EXISTS] adds the
// column. Other statements finish without effect and answer the result registered for them
// with AddResult (else no rows). Faults are injected with RESTHooks.
type REST struct {
	srv *httptest.Server
	// alterHidden: ALTER TABLE ADD COLUMN does not show in tables.get (the emulator's bug).
	alterHidden bool

	mu       sync.Mutex
	hooks    RESTHooks
	datasets map[string]*bq.Dataset // "project:dataset"
	tables   map[string]*restTable  // "project.dataset.table"
	jobs     map[string]*restJob    // job id
	sqls     []string               // every job's SQL, in order
	patches  []string               // tables patched, in order
	results  []Result               // canned SELECT results
	counts   map[string]int         // requests served, by "METHOD kind"
	etagSeq  int
}

// RESTHooks inject faults into the REST fake.
type RESTHooks struct {
	// HTTP is called before every request is served; a non-zero status is answered instead,
	// with a BigQuery error body (5xx: reason backendError, which the client retries).
	HTTP func(r *http.Request) int
	// FailJob is called with every query job's SQL; a non-nil error makes the job finish DONE
	// with it (errorResult and errors) and no effect, as a failed query does. JobError builds
	// one.
	FailJob func(sql string) *bq.ErrorProto
	// BeforePatch is called before a tables.patch is checked, with the table's
	// "project.dataset.table"; a hook that calls Touch makes the patch's etag stale.
	BeforePatch func(table string)
}

// JobError is a failed job's error: reason as BigQuery names it (invalidQuery, notFound,
// rateLimitExceeded, backendError, ...) and message.
func JobError(reason, msg string) *bq.ErrorProto {
	return &bq.ErrorProto{Reason: reason, Message: msg, Location: "query"}
}

// Result is a canned answer for the queries whose SQL contains Match.
type Result struct {
	Match  string
	Schema *bq.TableSchema
	// Rows hold one value per Schema field, rendered with fmt.Sprint (nil is NULL). Timestamps
	// are microseconds since the epoch, as the client asks for them.
	Rows [][]any
}

type restTable struct {
	meta *bq.Table
}

type restJob struct {
	job    *bq.Job
	result *Result
}

// NewREST starts the fake. With alterHidden false it behaves as BigQuery (an ALTER TABLE ADD
// COLUMN shows in tables.get at once); with true as bqemulator 1.4.0, whose tables.get shows the
// column only after a tables.patch adds it.
func NewREST(alterHidden bool) *REST {
	f := &REST{
		alterHidden: alterHidden,
		datasets:    map[string]*bq.Dataset{},
		tables:      map[string]*restTable{},
		jobs:        map[string]*restJob{},
		counts:      map[string]int{},
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	return f
}

// URL is the fake's base URL (without /bigquery/v2/).
func (f *REST) URL() string { return f.srv.URL }

// ClientOptions point a bigquery.Client at the fake.
func (f *REST) ClientOptions() []option.ClientOption {
	return []option.ClientOption{option.WithEndpoint(f.srv.URL + "/bigquery/v2/"), option.WithoutAuthentication()}
}

// Close stops the server.
func (f *REST) Close() { f.srv.Close() }

// SetHooks replaces the fault hooks.
func (f *REST) SetHooks(h RESTHooks) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hooks = h
}

// AddResult registers a canned query result.
func (f *REST) AddResult(r Result) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.results = append(f.results, r)
}

// SQL returns every query job's SQL received so far, in order (failed ones included).
func (f *REST) SQL() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.sqls...)
}

// Patches returns the "project.dataset.table" of every tables.patch that succeeded, in order.
func (f *REST) Patches() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.patches...)
}

// Count returns how many requests of a kind were answered, e.g. "POST datasets", "GET tables",
// "PATCH tables", "POST jobs", "POST queries" (injected failures included).
func (f *REST) Count(kind string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[kind]
}

// Table returns a table's metadata (a copy), or nil.
func (f *REST) Table(project, dataset, table string) *bq.Table {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.tables[project+"."+dataset+"."+table]
	if t == nil {
		return nil
	}
	b, _ := json.Marshal(t.meta)
	var out bq.Table
	_ = json.Unmarshal(b, &out)
	return &out
}

// Dataset returns a dataset's metadata, or nil.
func (f *REST) Dataset(project, dataset string) *bq.Dataset {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.datasets[project+":"+dataset]
	if d == nil {
		return nil
	}
	c := *d
	return &c
}

// CreateTable adds a table with the given fields, as tables.insert would.
func (f *REST) CreateTable(project, dataset, table string, fields ...*bq.TableFieldSchema) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.putTableLocked(project, dataset, table, &bq.TableSchema{Fields: fields}, "TABLE")
}

// Touch changes a table's etag, as a concurrent update does.
func (f *REST) Touch(path string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t := f.tables[path]; t != nil {
		t.meta.Etag = f.nextEtagLocked()
	}
}

func (f *REST) nextEtagLocked() string {
	f.etagSeq++
	return strconv.Quote("etag-" + strconv.Itoa(f.etagSeq))
}

func (f *REST) putTableLocked(project, dataset, table string, schema *bq.TableSchema, typ string) {
	f.tables[project+"."+dataset+"."+table] = &restTable{meta: &bq.Table{
		Kind: "bigquery#table",
		Id:   project + ":" + dataset + "." + table,
		TableReference: &bq.TableReference{
			ProjectId: project, DatasetId: dataset, TableId: table,
		},
		Schema: schema,
		Type:   typ,
		Etag:   f.nextEtagLocked(),
	}}
}

// ---------------------------------------------------------------- HTTP

var restPath = regexp.MustCompile(`^/bigquery/v2/projects/([^/]+)/(datasets|jobs|queries)(?:/([^/]+))?(?:/(tables)(?:/([^/]+))?)?$`)

func (f *REST) serve(w http.ResponseWriter, r *http.Request) {
	m := restPath.FindStringSubmatch(r.URL.Path)
	if m == nil {
		writeErr(w, http.StatusNotFound, "notFound", "fake: no route for "+r.Method+" "+r.URL.Path)
		return
	}
	project, coll, id, sub, subID := m[1], m[2], m[3], m[4], m[5]
	kind := r.Method + " " + coll
	if sub != "" {
		kind = r.Method + " tables"
	}
	f.mu.Lock()
	f.counts[kind]++
	hook := f.hooks.HTTP
	f.mu.Unlock()
	if hook != nil {
		if code := hook(r); code != 0 {
			reason := "invalid"
			if code >= 500 {
				reason = "backendError"
			}
			writeErr(w, code, reason, fmt.Sprintf("fake: injected %d", code))
			return
		}
	}
	switch {
	case coll == "datasets" && sub == "":
		f.serveDataset(w, r, project, id)
	case coll == "datasets":
		f.serveTable(w, r, project, id, subID)
	case coll == "jobs" && r.Method == http.MethodPost && id == "":
		f.serveJobInsert(w, r, project)
	case coll == "jobs" && r.Method == http.MethodGet && id != "":
		f.serveJobGet(w, id)
	case coll == "queries" && r.Method == http.MethodPost && id == "":
		f.serveQuery(w, r, project)
	case coll == "queries" && r.Method == http.MethodGet && id != "":
		f.serveQueryResults(w, r, id)
	default:
		writeErr(w, http.StatusNotFound, "notFound", "fake: no route for "+r.Method+" "+r.URL.Path)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"code": code, "message": msg,
		"errors": []map[string]string{{"reason": reason, "message": msg}},
	}})
}

func (f *REST) serveDataset(w http.ResponseWriter, r *http.Request, project, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && id != "":
		d := f.datasets[project+":"+id]
		if d == nil {
			writeErr(w, http.StatusNotFound, "notFound", "Not found: Dataset "+project+":"+id)
			return
		}
		writeJSON(w, d)
	case r.Method == http.MethodPost && id == "":
		var d bq.Dataset
		if err := json.NewDecoder(r.Body).Decode(&d); err != nil || d.DatasetReference == nil || d.DatasetReference.DatasetId == "" {
			writeErr(w, http.StatusBadRequest, "invalid", "fake: bad dataset body")
			return
		}
		key := project + ":" + d.DatasetReference.DatasetId
		if f.datasets[key] != nil {
			writeErr(w, http.StatusConflict, "duplicate", "Already Exists: Dataset "+key)
			return
		}
		d.DatasetReference.ProjectId = project
		d.Id, d.Kind, d.Etag = key, "bigquery#dataset", f.nextEtagLocked()
		if d.Location == "" {
			d.Location = "US"
		}
		f.datasets[key] = &d
		writeJSON(w, &d)
	case r.Method == http.MethodDelete && id != "":
		key := project + ":" + id
		if f.datasets[key] == nil {
			writeErr(w, http.StatusNotFound, "notFound", "Not found: Dataset "+key)
			return
		}
		prefix := project + "." + id + "."
		for k := range f.tables {
			if strings.HasPrefix(k, prefix) {
				if r.URL.Query().Get("deleteContents") != "true" {
					writeErr(w, http.StatusBadRequest, "resourceInUse", "Dataset "+key+" is still in use")
					return
				}
				delete(f.tables, k)
			}
		}
		delete(f.datasets, key)
		w.WriteHeader(http.StatusNoContent)
	default:
		writeErr(w, http.StatusMethodNotAllowed, "invalid", "fake: "+r.Method+" datasets")
	}
}

func (f *REST) serveTable(w http.ResponseWriter, r *http.Request, project, dataset, id string) {
	f.mu.Lock()
	if r.Method == http.MethodPatch && f.hooks.BeforePatch != nil {
		hook := f.hooks.BeforePatch
		f.mu.Unlock()
		hook(project + "." + dataset + "." + id)
		f.mu.Lock()
	}
	defer f.mu.Unlock()
	if f.datasets[project+":"+dataset] == nil {
		writeErr(w, http.StatusNotFound, "notFound", "Not found: Dataset "+project+":"+dataset)
		return
	}
	path := project + "." + dataset + "." + id
	switch {
	case r.Method == http.MethodGet && id != "":
		t := f.tables[path]
		if t == nil {
			writeErr(w, http.StatusNotFound, "notFound", "Not found: Table "+project+":"+dataset+"."+id)
			return
		}
		writeJSON(w, t.meta)
	case r.Method == http.MethodPost && id == "":
		var t bq.Table
		if err := json.NewDecoder(r.Body).Decode(&t); err != nil || t.TableReference == nil || t.TableReference.TableId == "" {
			writeErr(w, http.StatusBadRequest, "invalid", "fake: bad table body")
			return
		}
		path = project + "." + dataset + "." + t.TableReference.TableId
		if f.tables[path] != nil {
			writeErr(w, http.StatusConflict, "duplicate", "Already Exists: Table "+path)
			return
		}
		schema := t.Schema
		if schema == nil {
			schema = &bq.TableSchema{}
		}
		f.putTableLocked(project, dataset, t.TableReference.TableId, schema, "TABLE")
		f.tables[path].meta.TimePartitioning, f.tables[path].meta.Clustering = t.TimePartitioning, t.Clustering
		writeJSON(w, f.tables[path].meta)
	case r.Method == http.MethodPatch && id != "":
		t := f.tables[path]
		if t == nil {
			writeErr(w, http.StatusNotFound, "notFound", "Not found: Table "+path)
			return
		}
		if m := r.Header.Get("If-Match"); m != "" && m != t.meta.Etag {
			writeErr(w, http.StatusPreconditionFailed, "conditionNotMet", "Precondition check failed.")
			return
		}
		var patch bq.Table
		if err := json.NewDecoder(r.Body).Decode(&patch); err != nil {
			writeErr(w, http.StatusBadRequest, "invalid", "fake: bad table body")
			return
		}
		if patch.Schema != nil {
			if msg := schemaChangeAllowed(t.meta.Schema, patch.Schema); msg != "" {
				writeErr(w, http.StatusBadRequest, "invalid", msg)
				return
			}
			t.meta.Schema = patch.Schema
		}
		if patch.Description != "" {
			t.meta.Description = patch.Description
		}
		t.meta.Etag = f.nextEtagLocked()
		f.patches = append(f.patches, path)
		writeJSON(w, t.meta)
	default:
		writeErr(w, http.StatusMethodNotAllowed, "invalid", "fake: "+r.Method+" tables")
	}
}

// schemaChangeAllowed is BigQuery's rule for a patched schema: every existing column stays,
// with its type and mode (relaxing REQUIRED to NULLABLE aside); new columns are not REQUIRED.
func schemaChangeAllowed(old, new *bq.TableSchema) string {
	byName := map[string]*bq.TableFieldSchema{}
	for _, c := range new.Fields {
		byName[strings.ToLower(c.Name)] = c
	}
	oldNames := map[string]bool{}
	for _, c := range old.Fields {
		oldNames[strings.ToLower(c.Name)] = true
		n := byName[strings.ToLower(c.Name)]
		switch {
		case n == nil:
			return "Provided Schema does not match Table. Field " + c.Name + " is missing in new schema"
		case n.Type != c.Type:
			return "Provided Schema does not match Table. Field " + c.Name + " has changed type from " + c.Type + " to " + n.Type
		case mode(n) != mode(c) && !(mode(c) == "REQUIRED" && mode(n) == "NULLABLE"):
			return "Provided Schema does not match Table. Field " + c.Name + " has changed mode from " + mode(c) + " to " + mode(n)
		}
	}
	for _, c := range new.Fields {
		if !oldNames[strings.ToLower(c.Name)] && mode(c) == "REQUIRED" {
			return "Provided Schema does not match Table. Cannot add required field " + c.Name
		}
	}
	return ""
}

func mode(c *bq.TableFieldSchema) string {
	if c.Mode == "" {
		return "NULLABLE"
	}
	return c.Mode
}

// ---------------------------------------------------------------- jobs

func (f *REST) serveJobInsert(w http.ResponseWriter, r *http.Request, project string) {
	var j bq.Job
	if err := json.NewDecoder(r.Body).Decode(&j); err != nil || j.Configuration == nil || j.Configuration.Query == nil {
		writeErr(w, http.StatusBadRequest, "invalid", "fake: only query jobs are supported")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if j.JobReference == nil || j.JobReference.JobId == "" {
		j.JobReference = &bq.JobReference{JobId: "job_" + strconv.Itoa(len(f.jobs)+1)}
	}
	if old := f.jobs[j.JobReference.JobId]; old != nil { // a retried insert: same job
		writeJSON(w, old.job)
		return
	}
	j.JobReference.ProjectId = project
	if j.JobReference.Location == "" {
		j.JobReference.Location = "US"
	}
	rj := f.runLocked(project, &j)
	writeJSON(w, rj.job)
}

// runLocked executes a query job at once and stores it DONE.
func (f *REST) runLocked(project string, j *bq.Job) *restJob {
	sql := j.Configuration.Query.Query
	f.sqls = append(f.sqls, sql)
	j.Kind, j.Id = "bigquery#job", project+":"+j.JobReference.Location+"."+j.JobReference.JobId
	j.Status = &bq.JobStatus{State: "DONE"}
	j.Statistics = &bq.JobStatistics{Query: &bq.JobStatistics2{StatementType: statementType(sql)}}
	rj := &restJob{job: j}
	var e *bq.ErrorProto
	if f.hooks.FailJob != nil {
		e = f.hooks.FailJob(sql)
	}
	if e == nil {
		if msg := f.applyLocked(project, sql); msg != "" {
			e = JobError("invalidQuery", msg)
		}
	}
	if e != nil {
		j.Status.ErrorResult, j.Status.Errors = e, []*bq.ErrorProto{e}
	} else {
		rj.result = f.resultLocked(sql)
	}
	f.jobs[j.JobReference.JobId] = rj
	return rj
}

func (f *REST) resultLocked(sql string) *Result {
	for i := range f.results {
		if strings.Contains(sql, f.results[i].Match) {
			return &f.results[i]
		}
	}
	return nil
}

func (f *REST) serveJobGet(w http.ResponseWriter, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rj := f.jobs[id]
	if rj == nil {
		writeErr(w, http.StatusNotFound, "notFound", "Not found: Job "+id)
		return
	}
	writeJSON(w, rj.job)
}

// serveQueryResults answers jobs.getQueryResults; a failed job is answered with its error, as
// BigQuery does.
func (f *REST) serveQueryResults(w http.ResponseWriter, r *http.Request, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rj := f.jobs[id]
	if rj == nil {
		writeErr(w, http.StatusNotFound, "notFound", "Not found: Job "+id)
		return
	}
	if e := rj.job.Status.ErrorResult; e != nil {
		writeErr(w, http.StatusBadRequest, e.Reason, e.Message)
		return
	}
	res := &bq.GetQueryResultsResponse{Kind: "bigquery#getQueryResultsResponse", JobComplete: true, JobReference: rj.job.JobReference}
	schema, rows := rj.result.table()
	res.Schema, res.TotalRows = schema, uint64(len(rows))
	if r.URL.Query().Get("maxResults") != "0" {
		res.Rows = rows
	}
	writeJSON(w, res)
}

func (f *REST) serveQuery(w http.ResponseWriter, r *http.Request, project string) {
	var q bq.QueryRequest
	if err := json.NewDecoder(r.Body).Decode(&q); err != nil || q.Query == "" {
		writeErr(w, http.StatusBadRequest, "invalid", "fake: bad query request")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	j := &bq.Job{
		JobReference:  &bq.JobReference{JobId: "query_" + strconv.Itoa(len(f.jobs)+1), Location: q.Location},
		Configuration: &bq.JobConfiguration{Query: &bq.JobConfigurationQuery{Query: q.Query}},
	}
	if j.JobReference.Location == "" {
		j.JobReference.Location = "US"
	}
	j.JobReference.ProjectId = project
	rj := f.runLocked(project, j)
	if e := rj.job.Status.ErrorResult; e != nil {
		writeErr(w, http.StatusBadRequest, e.Reason, e.Message)
		return
	}
	schema, rows := rj.result.table()
	writeJSON(w, &bq.QueryResponse{
		Kind: "bigquery#queryResponse", JobComplete: true, JobReference: j.JobReference,
		Schema: schema, Rows: rows, TotalRows: uint64(len(rows)),
	})
}

func (r *Result) table() (*bq.TableSchema, []*bq.TableRow) {
	if r == nil {
		return &bq.TableSchema{}, nil
	}
	rows := make([]*bq.TableRow, len(r.Rows))
	for i, vals := range r.Rows {
		row := &bq.TableRow{F: make([]*bq.TableCell, len(vals))}
		for k, v := range vals {
			if v == nil {
				row.F[k] = &bq.TableCell{NullFields: []string{"V"}}
			} else {
				row.F[k] = &bq.TableCell{V: fmt.Sprint(v)}
			}
		}
		rows[i] = row
	}
	return r.Schema, rows
}

func statementType(sql string) string {
	stmts := splitSQL(sql)
	if len(stmts) > 1 {
		return "SCRIPT"
	}
	if len(stmts) == 0 {
		return ""
	}
	word, _, _ := strings.Cut(strings.TrimSpace(stmts[0]), " ")
	return strings.ToUpper(word)
}
