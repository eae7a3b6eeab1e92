// Command bqprobe asks a BigQuery endpoint (meant for the bqemulator
// emulator, deploy/local/stack/bqemulator-fetch.sh) which of the features
// bq-writer's BigQuery backend needs it supports, through the same Go
// clients the backend uses: cloud.google.com/go/bigquery over REST (DDL,
// table patch, queries) and storage/managedwriter over gRPC (default,
// COMMITTED and PENDING write streams). It prints one Markdown table row per
// check: feature | works? | evidence (the exact error or result).
//
//	bqprobe -rest http://127.0.0.1:27050 -grpc 127.0.0.1:27060 -project ecom-local
//	bqprobe ... -phase after-restart   (after restarting the emulator)
//
// The main phase leaves a COMMITTED stream with two rows and writes its name
// to -state; the after-restart phase reopens it. Exit status 0 means every
// check ran (whatever it found); 1 means the probe itself could not start.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"cloud.google.com/go/bigquery"
	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"cloud.google.com/go/bigquery/storage/managedwriter"
	"cloud.google.com/go/bigquery/storage/managedwriter/adapt"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	ddl "github.com/ecomstream/platform/sql"
)

type state struct {
	Dataset string `json:"dataset"`
	Table   string `json:"table"`
	Stream  string `json:"stream"`
	Rows    int64  `json:"rows"`
}

type prober struct {
	project string
	bq      *bigquery.Client
	mw      *managedwriter.Client
	dataset string
	desc    protoreflect.MessageDescriptor
	dp      *descriptorpb.DescriptorProto
	nextID  int64
}

func main() {
	rest := flag.String("rest", "http://127.0.0.1:27050", "REST endpoint of the emulator")
	grpcAddr := flag.String("grpc", "127.0.0.1:27060", "gRPC endpoint (host:port) of the emulator")
	project := flag.String("project", "ecom-local", "project id")
	dataset := flag.String("dataset", "", "dataset to create (default bqprobe_<unix time>)")
	phase := flag.String("phase", "main", "main or after-restart")
	statePath := flag.String("state", "bqprobe-state.json", "file the main phase writes and after-restart reads")
	timeout := flag.Duration("timeout", 2*time.Minute, "overall time limit")
	flag.Parse()
	if *phase != "main" && *phase != "after-restart" {
		fmt.Fprintf(os.Stderr, "bqprobe: -phase must be main or after-restart, got %q\n", *phase)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	p, err := newProber(ctx, *rest, *grpcAddr, *project)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bqprobe: %v\n", err)
		os.Exit(1)
	}
	defer p.close()
	fmt.Println("| feature | works? | evidence |")
	fmt.Println("| --- | --- | --- |")
	if *phase == "main" {
		p.dataset = *dataset
		if p.dataset == "" {
			p.dataset = fmt.Sprintf("bqprobe_%d", time.Now().Unix())
		}
		st, err := p.runMain(ctx)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bqprobe: %v\n", err)
			os.Exit(1)
		}
		b, _ := json.Marshal(st)
		if err := os.WriteFile(*statePath, b, 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "bqprobe: writing -state: %v\n", err)
			os.Exit(1)
		}
		return
	}
	b, err := os.ReadFile(*statePath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bqprobe: reading -state (run -phase main first): %v\n", err)
		os.Exit(1)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		fmt.Fprintf(os.Stderr, "bqprobe: -state %s: %v\n", *statePath, err)
		os.Exit(1)
	}
	p.dataset = st.Dataset
	p.runAfterRestart(ctx, st)
}

func newProber(ctx context.Context, rest, grpcAddr, project string) (*prober, error) {
	bq, err := bigquery.NewClient(ctx, project,
		option.WithEndpoint(strings.TrimRight(rest, "/")+"/bigquery/v2/"),
		option.WithoutAuthentication())
	if err != nil {
		return nil, fmt.Errorf("bigquery client: %w", err)
	}
	mw, err := managedwriter.NewClient(ctx, project,
		option.WithEndpoint(grpcAddr),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		bq.Close()
		return nil, fmt.Errorf("managedwriter client: %w", err)
	}
	return &prober{project: project, bq: bq, mw: mw, nextID: 1}, nil
}

func (p *prober) close() {
	p.mw.Close()
	p.bq.Close()
}

// row prints one result; evidence is cut to one table cell.
func row(feature string, ok bool, evidence string) {
	mark := "no"
	if ok {
		mark = "yes"
	}
	fmt.Printf("| %s | %s | %s |\n", feature, mark, cell(evidence))
}

// cell makes s one Markdown table cell: one line, "|" escaped, at most
// 300 bytes (cut on a rune boundary).
func cell(s string) string {
	s = strings.ReplaceAll(strings.ReplaceAll(s, "\n", " "), "|", "\\|")
	if len(s) > 300 {
		cut := 300
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// errText names the gRPC code of err where it has one.
func errText(err error) string {
	if err == nil {
		return "no error"
	}
	if s, ok := status.FromError(err); ok {
		return fmt.Sprintf("%s: %s", s.Code(), s.Message())
	}
	var ae interface{ GRPCStatus() *status.Status }
	if errors.As(err, &ae) {
		return fmt.Sprintf("%s: %s", ae.GRPCStatus().Code(), ae.GRPCStatus().Message())
	}
	return err.Error()
}

func codeOf(err error) string {
	if s, ok := status.FromError(err); ok {
		return s.Code().String()
	}
	var ae interface{ GRPCStatus() *status.Status }
	if errors.As(err, &ae) {
		return ae.GRPCStatus().Code().String()
	}
	return ""
}

var probeSchema = bigquery.Schema{
	{Name: "id", Type: bigquery.IntegerFieldType, Required: true},
	{Name: "ts", Type: bigquery.TimestampFieldType, Required: true},
	{Name: "user_id", Type: bigquery.StringFieldType},
	{Name: "event_type", Type: bigquery.StringFieldType},
	{Name: "kind", Type: bigquery.StringFieldType},
}

func (p *prober) runMain(ctx context.Context) (state, error) {
	ds := p.bq.Dataset(p.dataset)
	if err := ds.Create(ctx, &bigquery.DatasetMetadata{Location: "US"}); err != nil {
		row("REST: create dataset", false, errText(err))
		return state{}, fmt.Errorf("create dataset %s: %w", p.dataset, err)
	}
	md, err := ds.Metadata(ctx)
	if err != nil {
		row("REST: create dataset", false, "created, metadata read failed: "+errText(err))
	} else {
		row("REST: create dataset", true, fmt.Sprintf("dataset %s, location %q", md.FullID, md.Location))
	}
	err = ds.Create(ctx, nil)
	row("REST: create existing dataset -> 409", err != nil && strings.Contains(err.Error(), "409"), errText(err))

	p.ddlFiles(ctx)
	p.sqlBehaviour(ctx)

	tbl := ds.Table("probe")
	err = tbl.Create(ctx, &bigquery.TableMetadata{
		Schema:           probeSchema,
		TimePartitioning: &bigquery.TimePartitioning{Type: bigquery.DayPartitioningType, Field: "ts"},
		Clustering:       &bigquery.Clustering{Fields: []string{"user_id", "event_type"}},
	})
	if err != nil {
		row("REST: create table, day partitioned on ts, clustered", false, errText(err))
		return state{}, fmt.Errorf("create table: %w", err)
	}
	tmd, err := tbl.Metadata(ctx)
	if err != nil {
		row("REST: create table, day partitioned on ts, clustered", false, "metadata: "+errText(err))
		return state{}, fmt.Errorf("table metadata: %w", err)
	}
	row("REST: create table, day partitioned on ts, clustered", tmd.TimePartitioning != nil && tmd.Clustering != nil,
		fmt.Sprintf("read back: timePartitioning=%s clustering=%s", describePartitioning(tmd.TimePartitioning), describeClustering(tmd.Clustering)))
	_, err = tbl.Update(ctx, bigquery.TableMetadataToUpdate{Description: "stale"}, "\"not-the-etag\"")
	row("REST: patch with a wrong etag -> 412", err != nil, errText(err))

	if err := p.descriptorFor(ctx, tbl); err != nil {
		row("storage: proto descriptor from table schema", false, err.Error())
		return state{}, err
	}
	parent := managedwriter.TableParentFromParts(p.project, p.dataset, "probe")

	p.probeDefault(ctx, parent)
	st := p.probeCommitted(ctx, parent)
	p.probePending(ctx, parent)
	p.probeQueries(ctx)
	p.probeSchemaEvolution(ctx)
	return st, nil
}

func describePartitioning(tp *bigquery.TimePartitioning) string {
	if tp == nil {
		return "none"
	}
	return fmt.Sprintf("{type:%s field:%s}", tp.Type, tp.Field)
}

func describeClustering(c *bigquery.Clustering) string {
	if c == nil {
		return "none"
	}
	return fmt.Sprintf("%v", c.Fields)
}

func schemaNames(s bigquery.Schema) string {
	parts := make([]string, len(s))
	for i, f := range s {
		mode := "NULLABLE"
		if f.Required {
			mode = "REQUIRED"
		}
		parts[i] = fmt.Sprintf("%s %s %s", f.Name, f.Type, mode)
	}
	return strings.Join(parts, ", ")
}

// ddlFiles applies the repository's sql/bigquery files twice (the second
// run checks idempotency) as query jobs. The probe's dataset is the raw
// layer; staging and prod get datasets of their own beside it.
func (p *prober) ddlFiles(ctx context.Context) {
	dss := ddl.Datasets{Raw: p.dataset, Staging: p.dataset + "_staging", Prod: p.dataset + "_prod"}
	for _, id := range []string{dss.Staging, dss.Prod} {
		if err := p.bq.Dataset(id).Create(ctx, &bigquery.DatasetMetadata{Location: "US"}); err != nil {
			row("DDL: create dataset "+id, false, errText(err))
			return
		}
	}
	stmts, err := ddl.BigQuery(p.project, dss)
	if err != nil {
		row("DDL: sql/bigquery/*.sql", false, "render: "+err.Error())
		return
	}
	for _, s := range stmts {
		err1 := p.exec(ctx, s.SQL)
		err2 := error(nil)
		if err1 == nil {
			err2 = p.exec(ctx, s.SQL)
		}
		switch {
		case err1 != nil:
			row("DDL: "+s.Name, false, errText(err1)+"; "+p.splitApply(ctx, s.SQL))
		case err2 != nil:
			row("DDL: "+s.Name, false, "first run ok, second run: "+errText(err2))
		default:
			row("DDL: "+s.Name, true, "applied twice as a query job without error")
		}
	}
	md, err := p.bq.Dataset(p.dataset).Table("fact_events").Metadata(ctx)
	if err != nil {
		row("DDL: fact_events partitioning/clustering read back", false, errText(err))
	} else {
		row("DDL: fact_events partitioning/clustering read back", md.TimePartitioning != nil && md.Clustering != nil,
			fmt.Sprintf("timePartitioning=%s clustering=%s, %d columns", describePartitioning(md.TimePartitioning), describeClustering(md.Clustering), len(md.Schema)))
	}
	days := p.countAll(ctx, dss.Prod+".dim_date")
	row("DDL: dim_date.sql filled the calendar", !strings.HasPrefix(days, "COUNT(*)") && !strings.HasSuffix(days, " 0 rows"), days)
	err = p.exec(ctx, fmt.Sprintf("ALTER TABLE `%s.%s.fact_events` ADD COLUMN IF NOT EXISTS probe_extra STRING", p.project, p.dataset))
	if err == nil {
		err = p.exec(ctx, fmt.Sprintf("ALTER TABLE `%s.%s.fact_events` ADD COLUMN IF NOT EXISTS probe_extra STRING", p.project, p.dataset))
	}
	row("DDL: ALTER TABLE ADD COLUMN IF NOT EXISTS (twice)", err == nil, errText(err))
}

// splitApply runs a file's statements one job each (split at ";" ending a
// line, which holds for the files in sql/bigquery) and says how that went.
func (p *prober) splitApply(ctx context.Context, sql string) string {
	stmts := splitStatements(sql)
	for i, st := range stmts {
		if err := p.exec(ctx, st); err != nil {
			return fmt.Sprintf("split into %d statements: statement %d: %s", len(stmts), i+1, errText(err))
		}
	}
	return fmt.Sprintf("split into %d statements, one job each: all ok", len(stmts))
}

// splitStatements cuts a file at ";" ending a line and drops the parts
// that hold only comments.
func splitStatements(sql string) []string {
	var stmts []string
	for _, part := range strings.Split(sql, ";\n") {
		if strings.TrimSpace(stripComments(part)) != "" {
			stmts = append(stmts, part)
		}
	}
	return stmts
}

func stripComments(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func (p *prober) exec(ctx context.Context, sql string) error {
	job, err := p.bq.Query(sql).Run(ctx)
	if err != nil {
		return err
	}
	st, err := job.Wait(ctx)
	if err != nil {
		return err
	}
	return st.Err()
}

func (p *prober) descriptorFor(ctx context.Context, tbl *bigquery.Table) error {
	md, err := tbl.Metadata(ctx)
	if err != nil {
		return fmt.Errorf("table metadata: %w", err)
	}
	ts, err := adapt.BQSchemaToStorageTableSchema(md.Schema)
	if err != nil {
		return fmt.Errorf("storage schema: %w", err)
	}
	d, err := adapt.StorageSchemaToProto2Descriptor(ts, "root")
	if err != nil {
		return fmt.Errorf("proto descriptor: %w", err)
	}
	md2, ok := d.(protoreflect.MessageDescriptor)
	if !ok {
		return fmt.Errorf("proto descriptor is %T, not a message", d)
	}
	dp, err := adapt.NormalizeDescriptor(md2)
	if err != nil {
		return fmt.Errorf("normalize descriptor: %w", err)
	}
	p.desc, p.dp = md2, dp
	return nil
}

// rows builds n encoded rows with fresh ids; kind names the case (and
// note too when the descriptor has that column).
func (p *prober) rows(n int, kind string) [][]byte {
	out := make([][]byte, n)
	day := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for i := range out {
		m := dynamicpb.NewMessage(p.desc)
		f := p.desc.Fields()
		m.Set(f.ByName("id"), protoreflect.ValueOfInt64(p.nextID))
		m.Set(f.ByName("ts"), protoreflect.ValueOfInt64(day.Add(time.Duration(p.nextID)*time.Minute).UnixMicro()))
		m.Set(f.ByName("user_id"), protoreflect.ValueOfString(fmt.Sprintf("u%d", p.nextID%3)))
		m.Set(f.ByName("event_type"), protoreflect.ValueOfString("page_view"))
		m.Set(f.ByName("kind"), protoreflect.ValueOfString(kind))
		if nf := f.ByName("note"); nf != nil {
			m.Set(nf, protoreflect.ValueOfString("note-"+kind))
		}
		b, err := proto.Marshal(m)
		if err != nil {
			panic(err) // a dynamic message of a valid descriptor always marshals
		}
		out[i] = b
		p.nextID++
	}
	return out
}

// count returns the rows of table with the given kind.
func (p *prober) count(ctx context.Context, table, kind string) (int64, error) {
	q := p.bq.Query(fmt.Sprintf("SELECT COUNT(*) AS n FROM `%s.%s.%s` WHERE kind = @kind", p.project, p.dataset, table))
	q.Parameters = []bigquery.QueryParameter{{Name: "kind", Value: kind}}
	it, err := q.Read(ctx)
	if err != nil {
		return 0, err
	}
	var r []bigquery.Value
	if err := it.Next(&r); err != nil {
		return 0, err
	}
	n, ok := r[0].(int64)
	if !ok {
		return 0, fmt.Errorf("COUNT(*) came back as %T", r[0])
	}
	return n, nil
}

// countAll says how many rows table holds: a table of the probe's dataset,
// or "dataset.table".
func (p *prober) countAll(ctx context.Context, table string) string {
	qualified := p.dataset + "." + table
	if strings.Contains(table, ".") {
		qualified = table
	}
	it, err := p.bq.Query(fmt.Sprintf("SELECT COUNT(*) AS n FROM `%s.%s`", p.project, qualified)).Read(ctx)
	var r []bigquery.Value
	if err == nil {
		err = it.Next(&r)
	}
	if err != nil {
		return fmt.Sprintf("COUNT(*) of %s: %s", table, errText(err))
	}
	return fmt.Sprintf("%s holds %v rows", table, r[0])
}

func (p *prober) visible(ctx context.Context, kind string) string {
	return p.visibleIn(ctx, "probe", kind)
}

func (p *prober) visibleIn(ctx context.Context, table, kind string) string {
	n, err := p.count(ctx, table, kind)
	if err != nil {
		return "query failed: " + errText(err)
	}
	return fmt.Sprintf("query sees %d rows", n)
}

func (p *prober) append(ctx context.Context, ms *managedwriter.ManagedStream, rows [][]byte, offset int64) (int64, error) {
	var opts []managedwriter.AppendOption
	if offset >= 0 {
		opts = append(opts, managedwriter.WithOffset(offset))
	}
	res, err := ms.AppendRows(ctx, rows, opts...)
	if err != nil {
		return 0, err
	}
	return res.GetResult(ctx)
}

// appendFresh appends on a connection of its own, so what it finds is the
// stream's offset semantics, not the emulator's handling of a connection's
// later requests (see the same-connection checks).
func (p *prober) appendFresh(ctx context.Context, stream string, rows [][]byte, offset int64) (int64, error) {
	ms, err := p.openStream(ctx, stream)
	if err != nil {
		return 0, err
	}
	defer ms.Close()
	return p.append(ctx, ms, rows, offset)
}

func (p *prober) probeDefault(ctx context.Context, parent string) {
	ms, err := p.mw.NewManagedStream(ctx, managedwriter.WithDestinationTable(parent),
		managedwriter.WithType(managedwriter.DefaultStream), managedwriter.WithSchemaDescriptor(p.dp))
	if err != nil {
		row("storage: default stream open", false, errText(err))
		return
	}
	defer ms.Close()
	const kind = "default"
	off, err := p.append(ctx, ms, p.rows(3, kind), -1)
	row("storage: default stream, 1st append (3 rows, no offset)", err == nil,
		fmt.Sprintf("result offset %d, %s; %s", off, errText(err), p.visible(ctx, kind)))
	off, err = p.append(ctx, ms, p.rows(2, kind), -1)
	row("storage: default stream, 2nd append on the same connection", err == nil,
		fmt.Sprintf("result offset %d, %s; %s", off, errText(err), p.visible(ctx, kind)))
	off, err = p.append(ctx, ms, p.rows(2, kind), -1)
	row("storage: default stream, 3rd append (client reconnected)", err == nil,
		fmt.Sprintf("result offset %d, %s; %s", off, errText(err), p.visible(ctx, kind)))
	ms2, err := p.mw.NewManagedStream(ctx, managedwriter.WithDestinationTable(parent),
		managedwriter.WithType(managedwriter.DefaultStream), managedwriter.WithSchemaDescriptor(p.dp))
	if err == nil {
		_, err = p.append(ctx, ms2, p.rows(1, kind), 0)
		ms2.Close()
	}
	row("storage: default stream, append with an offset -> rejected", err != nil,
		fmt.Sprintf("%s; %s", errText(err), p.visible(ctx, kind)))
}

func (p *prober) createStream(ctx context.Context, parent string, t storagepb.WriteStream_Type) (*storagepb.WriteStream, error) {
	return p.mw.CreateWriteStream(ctx, &storagepb.CreateWriteStreamRequest{
		Parent: parent, WriteStream: &storagepb.WriteStream{Type: t},
	})
}

func (p *prober) openStream(ctx context.Context, name string) (*managedwriter.ManagedStream, error) {
	return p.mw.NewManagedStream(ctx, managedwriter.WithStreamName(name), managedwriter.WithSchemaDescriptor(p.dp))
}

func (p *prober) probeCommitted(ctx context.Context, parent string) state {
	ws, err := p.createStream(ctx, parent, storagepb.WriteStream_COMMITTED)
	if err != nil {
		row("storage: CreateWriteStream COMMITTED", false, errText(err))
		return state{}
	}
	row("storage: CreateWriteStream COMMITTED", ws.GetType() == storagepb.WriteStream_COMMITTED,
		fmt.Sprintf("name %s, type %s", ws.GetName(), ws.GetType()))
	name := ws.GetName()
	const kind = "committed"
	off, err := p.appendFresh(ctx, name, p.rows(2, kind), 0)
	row("storage: COMMITTED append 2 rows at offset 0", err == nil && off == 0,
		fmt.Sprintf("result offset %d, %s; %s", off, errText(err), p.visible(ctx, kind)))
	_, err = p.appendFresh(ctx, name, p.rows(2, kind), 0)
	row("storage: COMMITTED re-append at offset 0 -> ALREADY_EXISTS", codeOf(err) == "AlreadyExists",
		fmt.Sprintf("%s; %s", errText(err), p.visible(ctx, kind)))
	_, err = p.appendFresh(ctx, name, p.rows(2, kind), 1)
	row("storage: COMMITTED 2 rows at offset 1 (straddles end 2) -> ALREADY_EXISTS", codeOf(err) == "AlreadyExists",
		fmt.Sprintf("%s; %s", errText(err), p.visible(ctx, kind)))
	_, err = p.appendFresh(ctx, name, p.rows(1, kind), 5)
	row("storage: COMMITTED append at offset 5 (end is 2) -> OUT_OF_RANGE", codeOf(err) == "OutOfRange",
		fmt.Sprintf("%s; %s", errText(err), p.visible(ctx, kind)))
	off, err = p.appendFresh(ctx, name, p.rows(1, kind), 2)
	row("storage: COMMITTED append at the end (offset 2) after the errors", err == nil && off == 2,
		fmt.Sprintf("result offset %d, %s; %s", off, errText(err), p.visible(ctx, kind)))
	off, err = p.appendFresh(ctx, name, p.rows(1, kind), -1)
	row("storage: COMMITTED append without offset", err == nil,
		fmt.Sprintf("result offset %d, %s; %s", off, errText(err), p.visible(ctx, kind)))

	// Several appends on one connection, as a long-lived writer does.
	ms, err := p.openStream(ctx, name)
	if err != nil {
		row("storage: open COMMITTED stream by name", false, errText(err))
		return state{}
	}
	off1, err1 := p.append(ctx, ms, p.rows(1, kind), 4)
	off2, err2 := p.append(ctx, ms, p.rows(1, kind), 5)
	off3, err3 := p.append(ctx, ms, p.rows(1, kind), 5)
	ms.Close()
	row("storage: COMMITTED appends at 4, 5, 5 on ONE connection", err1 == nil && err2 == nil && codeOf(err3) == "AlreadyExists",
		fmt.Sprintf("1st: offset %d %s; 2nd: offset %d %s; 3rd: offset %d %s; %s", off1, errText(err1), off2, errText(err2), off3, errText(err3), p.visible(ctx, kind)))

	got, err := p.mw.GetWriteStream(ctx, &storagepb.GetWriteStreamRequest{Name: name, View: storagepb.WriteStreamView_FULL})
	if err != nil {
		row("storage: GetWriteStream (FULL view)", false, errText(err))
	} else {
		row("storage: GetWriteStream (FULL view)", got.GetName() == name,
			fmt.Sprintf("type %s, create_time %s, commit_time %s, table_schema fields %d, location %q",
				got.GetType(), got.GetCreateTime().AsTime().Format(time.RFC3339), fmtTS(got.GetCommitTime().IsValid(), got.GetCommitTime().AsTime()),
				len(got.GetTableSchema().GetFields()), got.GetLocation()))
	}
	_, err = p.mw.GetWriteStream(ctx, &storagepb.GetWriteStreamRequest{Name: parent + "/streams/0123456789abcdef"})
	row("storage: GetWriteStream of an unknown stream -> NOT_FOUND", codeOf(err) == "NotFound", errText(err))

	// A second COMMITTED stream is finalized, then appended to.
	ws2, err := p.createStream(ctx, parent, storagepb.WriteStream_COMMITTED)
	if err != nil {
		row("storage: FinalizeWriteStream on a COMMITTED stream", false, errText(err))
	} else {
		_, err = p.appendFresh(ctx, ws2.GetName(), p.rows(1, "finalized"), 0)
		if err != nil {
			row("storage: FinalizeWriteStream on a COMMITTED stream", false, "append before: "+errText(err))
		} else {
			n, err := p.finalize(ctx, ws2.GetName())
			row("storage: FinalizeWriteStream on a COMMITTED stream", err == nil, fmt.Sprintf("row_count %d, %s", n, errText(err)))
			_, err = p.appendFresh(ctx, ws2.GetName(), p.rows(1, "finalized"), 1)
			row("storage: append to a finalized stream -> rejected", err != nil,
				fmt.Sprintf("%s; %s", errText(err), p.visible(ctx, "finalized")))
			// A claim that finalized a stream and died before its Kafka commit leaves the
			// next claim to finalize it again: does the answer still carry the row count?
			n, err = p.finalize(ctx, ws2.GetName())
			row("storage: FinalizeWriteStream again on the finalized stream", err == nil && n == 1,
				fmt.Sprintf("row_count %d, %s", n, errText(err)))
		}
	}
	// Every stream is gone after an emulator restart: what a claim sees finalizing one.
	gone := parent + "/streams/0123456789abcdef"
	_, err = p.mw.GetWriteStream(ctx, &storagepb.GetWriteStreamRequest{Name: gone})
	_, ferr := p.finalize(ctx, gone)
	row("storage: FinalizeWriteStream of an unknown stream (as after a restart) -> NOT_FOUND", codeOf(err) == "NotFound",
		fmt.Sprintf("GetWriteStream: %s; NewManagedStream+Finalize: %s", errText(err), errText(ferr)))

	// The stream kept for the after-restart phase.
	ws3, err := p.createStream(ctx, parent, storagepb.WriteStream_COMMITTED)
	if err != nil {
		row("restart: prepare a COMMITTED stream", false, errText(err))
		return state{}
	}
	_, err = p.appendFresh(ctx, ws3.GetName(), p.rows(2, "restart"), 0)
	row("restart: prepare a COMMITTED stream with 2 rows", err == nil, fmt.Sprintf("%s, %s; %s", ws3.GetName(), errText(err), p.visible(ctx, "restart")))
	return state{Dataset: p.dataset, Table: "probe", Stream: ws3.GetName(), Rows: 2}
}

// finalize calls FinalizeWriteStream through a ManagedStream, the only way
// managedwriter exposes it.
func (p *prober) finalize(ctx context.Context, stream string) (int64, error) {
	ms, err := p.openStream(ctx, stream)
	if err != nil {
		return 0, err
	}
	defer ms.Close()
	return ms.Finalize(ctx)
}

// sqlBehaviour checks the query-job features a DDL applier relies on.
func (p *prober) sqlBehaviour(ctx context.Context) {
	t := fmt.Sprintf("`%s.%s.script_probe`", p.project, p.dataset)
	err := p.exec(ctx, "CREATE TABLE IF NOT EXISTS "+t+" (a INT64, b STRING);\nINSERT INTO "+t+" (a, b) VALUES (1, 'x'), (2, 'y');")
	row("SQL: two-statement script (CREATE; INSERT) as one query job", err == nil, fmt.Sprintf("%s; %s", errText(err), p.countAll(ctx, "script_probe")))
	err = p.exec(ctx, "CREATE TABLE IF NOT EXISTS "+t+" (a INT64)")
	row("SQL: single DDL statement as a query job", err == nil, errText(err))
	err = p.exec(ctx, fmt.Sprintf("CREATE OR REPLACE VIEW `%s.%s.script_view` AS SELECT a FROM %s QUALIFY ROW_NUMBER() OVER (PARTITION BY a ORDER BY b DESC) = 1", p.project, p.dataset, t))
	row("SQL: CREATE OR REPLACE VIEW with QUALIFY ROW_NUMBER()", err == nil, errText(err))
	err = p.exec(ctx, fmt.Sprintf("MERGE %s T USING (SELECT 1 AS a, 'x' AS b) S ON T.a = S.a WHEN MATCHED THEN UPDATE SET b = S.b WHEN NOT MATCHED THEN INSERT (a, b) VALUES (S.a, S.b)", t))
	row("SQL: MERGE", err == nil, errText(err))
}

func fmtTS(valid bool, t time.Time) string {
	if !valid || t.Unix() == 0 {
		return "unset"
	}
	return t.Format(time.RFC3339)
}

func (p *prober) probePending(ctx context.Context, parent string) {
	ws, err := p.createStream(ctx, parent, storagepb.WriteStream_PENDING)
	if err != nil {
		row("storage: CreateWriteStream PENDING", false, errText(err))
		return
	}
	name := ws.GetName()
	const kind = "pending"
	off, err := p.appendFresh(ctx, name, p.rows(3, kind), 0)
	row("storage: PENDING append 3 rows at offset 0 (invisible before commit)", err == nil,
		fmt.Sprintf("result offset %d, %s; %s", off, errText(err), p.visible(ctx, kind)))
	_, err = p.appendFresh(ctx, name, p.rows(1, kind), 0)
	row("storage: PENDING re-append at offset 0 -> ALREADY_EXISTS", codeOf(err) == "AlreadyExists", errText(err))
	_, err = p.appendFresh(ctx, name, p.rows(1, kind), 7)
	row("storage: PENDING append at offset 7 (end is 3) -> OUT_OF_RANGE", codeOf(err) == "OutOfRange", errText(err))

	resp, err := p.mw.BatchCommitWriteStreams(ctx, &storagepb.BatchCommitWriteStreamsRequest{Parent: parent, WriteStreams: []string{name}})
	row("storage: BatchCommitWriteStreams before Finalize -> stream error", err != nil || len(resp.GetStreamErrors()) > 0,
		fmt.Sprintf("%s, stream_errors %v, commit_time set %v; %s", errText(err), resp.GetStreamErrors(), resp.GetCommitTime() != nil, p.visible(ctx, kind)))

	n, err := p.finalize(ctx, name)
	row("storage: FinalizeWriteStream on PENDING", err == nil && n == 3,
		fmt.Sprintf("row_count %d, %s; %s", n, errText(err), p.visible(ctx, kind)))
	_, err = p.appendFresh(ctx, name, p.rows(1, kind), 3)
	row("storage: PENDING append after Finalize -> rejected", err != nil, errText(err))
	resp, err = p.mw.BatchCommitWriteStreams(ctx, &storagepb.BatchCommitWriteStreamsRequest{Parent: parent, WriteStreams: []string{name}})
	ct := "none"
	if resp.GetCommitTime() != nil {
		ct = resp.GetCommitTime().AsTime().Format(time.RFC3339)
	}
	row("storage: BatchCommitWriteStreams after Finalize", err == nil && len(resp.GetStreamErrors()) == 0 && resp.GetCommitTime() != nil,
		fmt.Sprintf("%s, commit_time %s, stream_errors %v; %s", errText(err), ct, resp.GetStreamErrors(), p.visible(ctx, kind)))
	resp, err = p.mw.BatchCommitWriteStreams(ctx, &storagepb.BatchCommitWriteStreamsRequest{Parent: parent, WriteStreams: []string{name}})
	row("storage: BatchCommitWriteStreams again (already committed)", err == nil,
		fmt.Sprintf("%s, stream_errors %v; %s", errText(err), resp.GetStreamErrors(), p.visible(ctx, kind)))
	got, err := p.mw.GetWriteStream(ctx, &storagepb.GetWriteStreamRequest{Name: name})
	if err == nil {
		row("storage: GetWriteStream after commit", true, fmt.Sprintf("type %s, commit_time %s", got.GetType(), fmtTS(got.GetCommitTime().IsValid(), got.GetCommitTime().AsTime())))
	} else {
		row("storage: GetWriteStream after commit", false, errText(err))
	}

	// Two PENDING streams committed atomically together.
	a, errA := p.createStream(ctx, parent, storagepb.WriteStream_PENDING)
	b, errB := p.createStream(ctx, parent, storagepb.WriteStream_PENDING)
	err = errors.Join(errA, errB)
	if err == nil {
		_, errA = p.appendFresh(ctx, a.GetName(), p.rows(1, "pending2"), 0)
		_, errB = p.appendFresh(ctx, b.GetName(), p.rows(2, "pending2"), 0)
		_, errF1 := p.finalize(ctx, a.GetName())
		_, errF2 := p.finalize(ctx, b.GetName())
		err = errors.Join(errA, errB, errF1, errF2)
	}
	if err == nil {
		resp, err = p.mw.BatchCommitWriteStreams(ctx, &storagepb.BatchCommitWriteStreamsRequest{Parent: parent, WriteStreams: []string{a.GetName(), b.GetName()}})
	}
	row("storage: BatchCommitWriteStreams of two PENDING streams", err == nil && len(resp.GetStreamErrors()) == 0,
		fmt.Sprintf("%s, stream_errors %v; %s", errText(err), resp.GetStreamErrors(), p.visible(ctx, "pending2")))
}

func (p *prober) probeQueries(ctx context.Context) {
	q := p.bq.Query(fmt.Sprintf("SELECT id, ts, user_id, kind FROM `%s.%s.probe` WHERE DATE(ts) = '2026-11-30' ORDER BY id LIMIT 3", p.project, p.dataset))
	it, err := q.Read(ctx)
	var sample []string
	for err == nil {
		var r struct {
			ID     int64     `bigquery:"id"`
			TS     time.Time `bigquery:"ts"`
			UserID string    `bigquery:"user_id"`
			Kind   string    `bigquery:"kind"`
		}
		err = it.Next(&r)
		if err == nil {
			sample = append(sample, fmt.Sprintf("(%d %s %s %s)", r.ID, r.TS.UTC().Format(time.RFC3339), r.UserID, r.Kind))
		}
	}
	if errors.Is(err, iterator.Done) {
		err = nil
	}
	row("REST: query with partition filter, rows read back into a struct", err == nil && len(sample) > 0,
		fmt.Sprintf("%s; rows %s", errText(err), strings.Join(sample, " ")))

	it2 := p.bq.Dataset(p.dataset).Table("probe").Read(ctx)
	n := 0
	err = nil
	for err == nil {
		var r []bigquery.Value
		err = it2.Next(&r)
		if err == nil {
			n++
		}
	}
	if errors.Is(err, iterator.Done) {
		err = nil
	}
	row("REST: tabledata.list (Table.Read)", err == nil && n > 0, fmt.Sprintf("%s; %d rows", errText(err), n))

	it3, err := p.bq.Query(fmt.Sprintf("SELECT no_such_column FROM `%s.%s.probe`", p.project, p.dataset)).Read(ctx)
	if err == nil {
		var r []bigquery.Value
		err = it3.Next(&r)
	}
	row("REST: a failing query returns an error to the Go client", err != nil && !errors.Is(err, iterator.Done),
		fmt.Sprintf("Read+Next: %v", err))
}

// probeSchemaEvolution adds a NULLABLE column two ways and appends a row
// that carries it.
func (p *prober) probeSchemaEvolution(ctx context.Context) {
	ds := p.bq.Dataset(p.dataset)
	for _, way := range []string{"patch", "alter", "both"} {
		name := "evolve_" + way
		tbl := ds.Table(name)
		if err := tbl.Create(ctx, &bigquery.TableMetadata{Schema: probeSchema}); err != nil {
			row("schema evolution ("+way+"): create table", false, errText(err))
			continue
		}
		var err error
		var feature string
		if way == "patch" {
			feature = "schema evolution: tables.patch adds NULLABLE note, then append with it"
			md, merr := tbl.Metadata(ctx)
			err = merr
			if err == nil {
				newSchema := append(append(bigquery.Schema{}, md.Schema...), &bigquery.FieldSchema{Name: "note", Type: bigquery.StringFieldType})
				_, err = tbl.Update(ctx, bigquery.TableMetadataToUpdate{Schema: newSchema}, md.ETag)
			}
		} else {
			feature = "schema evolution: ALTER TABLE ADD COLUMN IF NOT EXISTS note, then append with it"
			err = p.exec(ctx, fmt.Sprintf("ALTER TABLE `%s.%s.%s` ADD COLUMN IF NOT EXISTS note STRING", p.project, p.dataset, name))
		}
		if way == "both" {
			feature = "schema evolution: ALTER TABLE ADD COLUMN and then tables.patch, then append with it"
			md, merr := tbl.Metadata(ctx)
			err = merr
			if err == nil {
				newSchema := append(append(bigquery.Schema{}, md.Schema...), &bigquery.FieldSchema{Name: "note", Type: bigquery.StringFieldType})
				_, err = tbl.Update(ctx, bigquery.TableMetadataToUpdate{Schema: newSchema}, md.ETag)
			}
		}
		if err != nil {
			row(feature, false, "adding the column: "+errText(err))
			continue
		}
		md, err := tbl.Metadata(ctx)
		if err != nil {
			row(feature, false, "metadata: "+errText(err))
			continue
		}
		parent := managedwriter.TableParentFromParts(p.project, p.dataset, name)
		if way == "both" {
			// A writer still on the old descriptor (rows without note).
			ms, err := p.mw.NewManagedStream(ctx, managedwriter.WithDestinationTable(parent),
				managedwriter.WithType(managedwriter.DefaultStream), managedwriter.WithSchemaDescriptor(p.dp))
			var off int64
			if err == nil {
				off, err = p.append(ctx, ms, p.rows(1, "old"), -1)
				ms.Close()
			}
			row("schema evolution: after ALTER+patch, append with the OLD descriptor (no note)", err == nil,
				fmt.Sprintf("offset %d, %s; %s", off, errText(err), p.visibleIn(ctx, name, "old")))
		}
		if err := p.descriptorFor(ctx, tbl); err != nil {
			row(feature, false, err.Error())
			continue
		}
		ms, err := p.mw.NewManagedStream(ctx, managedwriter.WithDestinationTable(parent),
			managedwriter.WithType(managedwriter.DefaultStream), managedwriter.WithSchemaDescriptor(p.dp))
		var off int64
		if err == nil {
			off, err = p.append(ctx, ms, p.rows(2, way), -1)
			ms.Close()
		}
		noteSeen := "query of note failed"
		if q, qerr := p.bq.Query(fmt.Sprintf("SELECT COUNT(note) AS n FROM `%s.%s.%s`", p.project, p.dataset, name)).Read(ctx); qerr == nil {
			var r []bigquery.Value
			if nerr := q.Next(&r); nerr == nil {
				noteSeen = fmt.Sprintf("COUNT(note) = %v", r[0])
			} else {
				noteSeen = "COUNT(note): " + errText(nerr)
			}
		}
		row(feature, err == nil,
			fmt.Sprintf("metadata columns %d; append: offset %d, %s; %s; %s", len(md.Schema), off, errText(err), p.visibleIn(ctx, name, way), noteSeen))
	}
}

func (p *prober) runAfterRestart(ctx context.Context, st state) {
	tbl := p.bq.Dataset(st.Dataset).Table(st.Table)
	md, err := tbl.Metadata(ctx)
	if err != nil {
		row("restart: table still there", false, errText(err))
		return
	}
	row("restart: table still there", true, fmt.Sprintf("%s, %d columns; %s", md.FullID, len(md.Schema), p.visible(ctx, "restart")))
	if err := p.descriptorFor(ctx, tbl); err != nil {
		row("restart: proto descriptor", false, err.Error())
		return
	}
	p.nextID = 1000
	got, err := p.mw.GetWriteStream(ctx, &storagepb.GetWriteStreamRequest{Name: st.Stream})
	if err != nil {
		row("restart: GetWriteStream of the stream made before", false, errText(err))
	} else {
		row("restart: GetWriteStream of the stream made before", true, fmt.Sprintf("type %s", got.GetType()))
	}
	n, err := p.finalize(ctx, st.Stream)
	row("restart: FinalizeWriteStream of the stream made before", err == nil, fmt.Sprintf("row_count %d, %s", n, errText(err)))
	_, err = p.appendFresh(ctx, st.Stream, p.rows(1, "restart"), 0)
	row("restart: re-append at offset 0 -> ALREADY_EXISTS", codeOf(err) == "AlreadyExists", fmt.Sprintf("%s; %s", errText(err), p.visible(ctx, "restart")))
	off, err := p.appendFresh(ctx, st.Stream, p.rows(1, "restart"), st.Rows)
	row(fmt.Sprintf("restart: append at the old end (offset %d)", st.Rows), err == nil,
		fmt.Sprintf("result offset %d, %s; %s", off, errText(err), p.visible(ctx, "restart")))
}
