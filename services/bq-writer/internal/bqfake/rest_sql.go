package bqfake

import (
	"fmt"
	"regexp"
	"strings"

	bq "google.golang.org/api/bigquery/v2"
)

// The REST fake's DDL: just enough GoogleSQL to keep the catalog that tables.get shows.

var (
	createTableRE = regexp.MustCompile(`(?is)^CREATE\s+(OR\s+REPLACE\s+)?TABLE\s+(IF\s+NOT\s+EXISTS\s+)?` + "`([^`]+)`" + `\s*\(`)
	createViewRE  = regexp.MustCompile(`(?is)^CREATE\s+(OR\s+REPLACE\s+)?VIEW\s+(IF\s+NOT\s+EXISTS\s+)?` + "`([^`]+)`")
	alterTableRE  = regexp.MustCompile(`(?is)^ALTER\s+TABLE\s+` + "`([^`]+)`" + `\s+(.*)$`)
	addColumnRE   = regexp.MustCompile(`(?is)^ADD\s+COLUMN\s+(IF\s+NOT\s+EXISTS\s+)?(.*)$`)
	columnRE      = regexp.MustCompile(`(?s)^(\S+)\s+(.*)$`)
	notNullRE     = regexp.MustCompile(`(?i)^NOT\s+NULL\b`)
	descriptionRE = regexp.MustCompile(`(?is)OPTIONS\s*\(\s*description\s*=\s*'((?:[^']|'')*)'`)
)

// applyLocked runs a job's statements against the catalog and returns an error message, or ""
// when every statement was applied (statements other than DDL have no effect).
func (f *REST) applyLocked(project, sql string) string {
	for i, st := range splitSQL(sql) {
		if msg := f.applyOneLocked(project, st); msg != "" {
			return fmt.Sprintf("%s at [statement %d]", msg, i+1)
		}
	}
	return ""
}

func (f *REST) applyOneLocked(project, st string) string {
	if m := createTableRE.FindStringSubmatchIndex(st); m != nil {
		replace, ifNot := m[2] >= 0, m[4] >= 0
		p, d, t, msg := f.resolveLocked(project, st[m[6]:m[7]])
		if msg != "" {
			return msg
		}
		body, ok := parenBody(st[m[1]-1:])
		if !ok {
			return "syntax error: unclosed column list"
		}
		var fields []*bq.TableFieldSchema
		for _, def := range splitTop(body, ',') {
			col, err := parseColumn(def)
			if err != nil {
				return err.Error()
			}
			fields = append(fields, col)
		}
		if f.tables[p+"."+d+"."+t] != nil && !replace {
			if ifNot {
				return ""
			}
			return "Already Exists: Table " + p + ":" + d + "." + t
		}
		f.putTableLocked(p, d, t, &bq.TableSchema{Fields: fields}, "TABLE")
		return ""
	}
	if m := createViewRE.FindStringSubmatch(st); m != nil {
		p, d, t, msg := f.resolveLocked(project, m[3])
		if msg != "" {
			return msg
		}
		if f.tables[p+"."+d+"."+t] != nil && m[1] == "" {
			if m[2] != "" {
				return ""
			}
			return "Already Exists: Table " + p + ":" + d + "." + t
		}
		f.putTableLocked(p, d, t, &bq.TableSchema{}, "VIEW")
		return ""
	}
	if m := alterTableRE.FindStringSubmatch(st); m != nil {
		p, d, t, msg := f.resolveLocked(project, m[1])
		if msg != "" {
			return msg
		}
		tbl := f.tables[p+"."+d+"."+t]
		if tbl == nil {
			return "Not found: Table " + p + ":" + d + "." + t
		}
		var add []*bq.TableFieldSchema
		for _, clause := range splitTop(m[2], ',') {
			c := addColumnRE.FindStringSubmatch(strings.TrimSpace(clause))
			if c == nil {
				return "fake: unsupported ALTER TABLE clause " + strings.TrimSpace(clause)
			}
			col, err := parseColumn(c[2])
			if err != nil {
				return err.Error()
			}
			if col.Mode == "REQUIRED" {
				return "Cannot add required column " + col.Name
			}
			exists := false
			for _, have := range append(tbl.meta.Schema.Fields, add...) {
				exists = exists || strings.EqualFold(have.Name, col.Name)
			}
			switch {
			case exists && c[1] == "":
				return "Column already exists: " + col.Name
			case !exists:
				add = append(add, col)
			}
		}
		if len(add) > 0 && !f.alterHidden {
			tbl.meta.Schema.Fields = append(tbl.meta.Schema.Fields, add...)
			tbl.meta.Etag = f.nextEtagLocked()
		}
		return ""
	}
	return ""
}

// resolveLocked splits `project.dataset.table` (or `dataset.table`) and checks the dataset.
func (f *REST) resolveLocked(project, name string) (p, d, t, msg string) {
	parts := strings.Split(name, ".")
	switch len(parts) {
	case 3:
		p, d, t = parts[0], parts[1], parts[2]
	case 2:
		p, d, t = project, parts[0], parts[1]
	default:
		return "", "", "", "Table name \"" + name + "\" missing dataset while no default dataset is set in the request."
	}
	if f.datasets[p+":"+d] == nil {
		return "", "", "", "Not found: Dataset " + p + ":" + d
	}
	return p, d, t, ""
}

var scalarTypes = map[string]string{
	"STRING": "STRING", "INT64": "INTEGER", "INTEGER": "INTEGER", "FLOAT64": "FLOAT", "FLOAT": "FLOAT",
	"BOOL": "BOOLEAN", "BOOLEAN": "BOOLEAN", "BYTES": "BYTES", "TIMESTAMP": "TIMESTAMP", "DATE": "DATE",
	"TIME": "TIME", "DATETIME": "DATETIME", "NUMERIC": "NUMERIC", "BIGNUMERIC": "BIGNUMERIC",
	"GEOGRAPHY": "GEOGRAPHY", "JSON": "JSON", "INTERVAL": "INTERVAL",
}

// parseColumn reads "name TYPE [NOT NULL] [OPTIONS (...)]".
func parseColumn(def string) (*bq.TableFieldSchema, error) {
	def = strings.TrimSpace(def)
	m := columnRE.FindStringSubmatch(def)
	if m == nil {
		return nil, fmt.Errorf("syntax error: column definition %q has no type", def)
	}
	name := strings.Trim(m[1], "`")
	typ, tail := cutType(strings.TrimSpace(m[2]))
	col, err := parseType(typ)
	if err != nil {
		return nil, fmt.Errorf("column %s: %w", name, err)
	}
	col.Name = name
	if notNullRE.MatchString(strings.TrimSpace(tail)) {
		if col.Mode == "REPEATED" {
			return nil, fmt.Errorf("column %s: an ARRAY cannot be NOT NULL", name)
		}
		col.Mode = "REQUIRED"
	}
	if m := descriptionRE.FindStringSubmatch(tail); m != nil {
		col.Description = strings.ReplaceAll(m[1], "''", "'")
	}
	return col, nil
}

// cutType splits "ARRAY<STRUCT<a INT64>> NOT NULL" into the type and the rest.
func cutType(s string) (typ, rest string) {
	depth := 0
	for i, r := range s {
		switch {
		case r == '<':
			depth++
		case r == '>':
			depth--
		case (r == ' ' || r == '\n' || r == '\t') && depth == 0:
			return s[:i], s[i:]
		}
	}
	return s, ""
}

func parseType(t string) (*bq.TableFieldSchema, error) {
	up := strings.ToUpper(strings.TrimSpace(t))
	switch {
	case strings.HasPrefix(up, "ARRAY<") && strings.HasSuffix(up, ">"):
		inner, err := parseType(strings.TrimSpace(t)[6 : len(strings.TrimSpace(t))-1])
		if err != nil {
			return nil, err
		}
		inner.Mode = "REPEATED"
		return inner, nil
	case strings.HasPrefix(up, "STRUCT<") && strings.HasSuffix(up, ">"):
		tt := strings.TrimSpace(t)
		col := &bq.TableFieldSchema{Type: "RECORD", Mode: "NULLABLE"}
		for _, def := range splitTop(tt[7:len(tt)-1], ',') {
			sub, err := parseColumn(def)
			if err != nil {
				return nil, err
			}
			col.Fields = append(col.Fields, sub)
		}
		return col, nil
	}
	if bt, ok := scalarTypes[up]; ok {
		return &bq.TableFieldSchema{Type: bt, Mode: "NULLABLE"}, nil
	}
	return nil, fmt.Errorf("fake: unsupported type %q", t)
}

// parenBody returns what is inside the parenthesis s starts with.
func parenBody(s string) (string, bool) {
	depth := 0
	var quote rune
	for i, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '\'' || r == '"' || r == '`':
			quote = r
		case r == '(':
			depth++
		case r == ')':
			depth--
			if depth == 0 {
				return s[1:i], true
			}
		}
	}
	return "", false
}

// splitTop splits s at sep outside quotes, parentheses and angle brackets.
func splitTop(s string, sep rune) []string {
	var parts []string
	depth, start := 0, 0
	var quote rune
	for i, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '\'' || r == '"' || r == '`':
			quote = r
		case r == '(' || r == '<':
			depth++
		case r == ')' || r == '>':
			depth--
		case r == sep && depth == 0:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	if strings.TrimSpace(s[start:]) != "" {
		parts = append(parts, s[start:])
	}
	return parts
}

// splitSQL cuts a script into statements at semicolons outside quotes, dropping "--" comments
// and empty statements.
func splitSQL(sql string) []string {
	var stmts []string
	var b strings.Builder
	var quote rune
	rs := []rune(sql)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '\'' || r == '"' || r == '`':
			quote = r
		case r == '-' && i+1 < len(rs) && rs[i+1] == '-':
			for i < len(rs) && rs[i] != '\n' {
				i++
			}
			b.WriteRune('\n')
			continue
		case r == ';':
			if s := strings.TrimSpace(b.String()); s != "" {
				stmts = append(stmts, s)
			}
			b.Reset()
			continue
		}
		b.WriteRune(r)
	}
	if s := strings.TrimSpace(b.String()); s != "" {
		stmts = append(stmts, s)
	}
	return stmts
}
