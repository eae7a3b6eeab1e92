package observability

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// Heading is one ATX heading of a Markdown file with its GitHub anchor.
type Heading struct {
	Level  int    // 1 for "#", 2 for "##", ...
	Text   string // as written, without the leading #s
	Anchor string // GitHub's id: Slug(Text), with -1, -2 ... for repeats
	Line   int
}

// mdLink matches an inline link [text](target); GitHub slugs the link text.
var mdLink = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)

// Slug is GitHub's anchor of a heading: the rendered text (a link counts as
// its text, a code span as its content) in lower case, every character that
// is not a letter, a digit, a space, '-' or '_' dropped, and each space turned
// into '-' (so " / " becomes "--"). Emphasis written with '_' is not
// rendered here: its underscores stay, which GitHub would drop; the runbooks
// use code spans for identifiers.
func Slug(heading string) string {
	text := mdLink.ReplaceAllString(strings.TrimSpace(heading), "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// ReadHeadings lists the ATX headings of Markdown text outside fenced code
// blocks (a "# comment" in a shell block is not a heading), with anchors
// numbered as GitHub numbers repeats: the second "Not ready" is not-ready-1.
func ReadHeadings(r io.Reader) ([]Heading, error) {
	var out []Heading
	seen := map[string]int{}
	fence := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimLeft(line, " ")
		indent := len(line) - len(trimmed)
		if fence != "" {
			if indent <= 3 && strings.HasPrefix(trimmed, fence) && strings.TrimSpace(strings.TrimLeft(trimmed, fence[:1])) == "" {
				fence = ""
			}
			continue
		}
		if indent > 3 {
			continue // an indented code block
		}
		if f := fenceOf(trimmed); f != "" {
			fence = f
			continue
		}
		level := 0
		for level < len(trimmed) && trimmed[level] == '#' {
			level++
		}
		if level == 0 || level > 6 {
			continue
		}
		rest := trimmed[level:]
		if rest != "" && rest[0] != ' ' && rest[0] != '\t' {
			continue // "#hashtag" is not a heading
		}
		text := strings.TrimSpace(strings.TrimRight(strings.TrimSpace(rest), "#"))
		anchor := Slug(text)
		if k, ok := seen[anchor]; ok {
			seen[anchor] = k + 1
			anchor += "-" + strconv.Itoa(k+1)
		} else {
			seen[anchor] = 0
		}
		out = append(out, Heading{Level: level, Text: text, Anchor: anchor, Line: n})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read headings: %w", err)
	}
	return out, nil
}

// fenceOf returns the fence (three or more backticks or tildes) a line
// opens, or "".
func fenceOf(line string) string {
	for _, c := range []string{"`", "~"} {
		n := 0
		for n < len(line) && line[n:n+1] == c {
			n++
		}
		if n >= 3 {
			return strings.Repeat(c, n)
		}
	}
	return ""
}

// RunbookAnchors returns the anchors of the "##" and "###" headings of the
// Markdown file at path: the sections an alert's runbook_url may name.
func RunbookAnchors(path string) (map[string]Heading, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	hs, err := ReadHeadings(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := map[string]Heading{}
	for _, h := range hs {
		if h.Level == 2 || h.Level == 3 {
			out[h.Anchor] = h
		}
	}
	return out, nil
}

// AlertsTableRow is one row of a runbook's "## Alerts" table: the alert's
// name (a code span in the first cell) and the anchor its last cell links.
type AlertsTableRow struct {
	Alert  string
	Anchor string
	Line   int
}

var (
	rowAlert  = regexp.MustCompile("^\\|\\s*`([A-Za-z0-9_]+)`\\s*\\|")
	rowAnchor = regexp.MustCompile(`\]\(#([^)]+)\)\s*\|\s*$`)
)

// ReadAlertsTable returns the rows of the table under the "## Alerts"
// heading of Markdown text, in order; ok is false when there is no such
// heading. A row whose first cell is not a code span (the header, the
// separator) is skipped; one without a section link has an empty Anchor.
func ReadAlertsTable(r io.Reader) (rows []AlertsTableRow, ok bool, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	in := false
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			level := len(line) - len(strings.TrimLeft(line, "#"))
			if in && level <= 2 {
				break
			}
			if level == 2 && strings.TrimSpace(line[2:]) == "Alerts" {
				in, ok = true, true
			}
			continue
		}
		if !in {
			continue
		}
		m := rowAlert.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		row := AlertsTableRow{Alert: m[1], Line: n}
		if a := rowAnchor.FindStringSubmatch(line); a != nil {
			row.Anchor = a[1]
		}
		rows = append(rows, row)
	}
	if err := sc.Err(); err != nil {
		return nil, false, fmt.Errorf("read alerts table: %w", err)
	}
	return rows, ok, nil
}
