package cap

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Limits bound what Parse accepts. A field of zero or less takes its default.
type Limits struct {
	MaxBytes  int64 // size of the document as sent; default 1 MiB
	MaxDepth  int   // element nesting, the root being 1; default 32
	MaxInfos  int   // <info> blocks; default 32
	MaxAreas  int   // <area> elements over all infos; default 1000
	MaxShapes int   // <polygon> and <circle> elements over all areas; default 1000
	MaxPoints int   // polygon points over all polygons; default 20000
}

// Defaults for Limits.
const (
	DefaultMaxBytes  = 1 << 20
	DefaultMaxDepth  = 32
	DefaultMaxInfos  = 32
	DefaultMaxAreas  = 1000
	DefaultMaxShapes = 1000
	DefaultMaxPoints = 20000
)

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	if l.MaxInfos <= 0 {
		l.MaxInfos = DefaultMaxInfos
	}
	if l.MaxAreas <= 0 {
		l.MaxAreas = DefaultMaxAreas
	}
	if l.MaxShapes <= 0 {
		l.MaxShapes = DefaultMaxShapes
	}
	if l.MaxPoints <= 0 {
		l.MaxPoints = DefaultMaxPoints
	}
	return l
}

// Parse reads one CAP 1.2 or 1.1 alert, with any namespace prefix or none.
// The root may be the <alert> itself, or an Atom <entry>, RSS <item> or
// EDXL-DE <EDXLDistribution> that carries one inline; the first alert found
// is read and the rest of the document ignored. XML signatures, other
// elements outside the CAP namespace and unknown ones inside it are skipped,
// so profiles that extend CAP still parse. An <alert> in no namespace at
// all is read as CAP 1.2.
//
// Parse refuses any DOCTYPE, ENTITY or other declaration outright, and
// documents beyond opts. It reads UTF-8, US-ASCII, ISO-8859-1 and
// windows-1252; GB2312, GBK and GB18030 are refused, since decoding them
// needs golang.org/x/text, which warngate does not use.
//
// Errors are *Error values naming the element at fault by its path; problems
// with element values and missing required elements are all reported at
// once, joined with errors.Join.
func Parse(r io.Reader, opts Limits) (*Alert, error) {
	lim := opts.withDefaults()
	cr := &countingReader{r: r, max: lim.MaxBytes}
	d := xml.NewDecoder(cr)
	d.Strict = true
	d.CharsetReader = charsetReader
	p := &parser{d: d, cr: cr, lim: lim, bad: map[string]bool{}}
	a, err := p.document()
	if err != nil {
		return nil, err
	}
	if err := a.validate(p.bad, &p.probs); err != nil {
		return nil, err
	}
	return a, nil
}

// countingReader fails once more than max bytes have been read.
type countingReader struct {
	r    io.Reader
	max  int64
	n    int64
	over bool
}

var errTooLarge = errors.New("document too large")

func (c *countingReader) Read(b []byte) (int, error) {
	if c.n > c.max {
		c.over = true
		return 0, errTooLarge
	}
	if room := c.max + 1 - c.n; int64(len(b)) > room {
		b = b[:room]
	}
	n, err := c.r.Read(b)
	c.n += int64(n)
	if c.n > c.max {
		c.over = true
		return 0, errTooLarge
	}
	return n, err
}

type parser struct {
	d     *xml.Decoder
	cr    *countingReader
	lim   Limits
	depth int
	ns    string // the namespace of the alert element
	probs problems
	bad   map[string]bool // paths already reported, so validate does not repeat them

	infos, areas, shapes, points int
}

// token returns the next token, refusing declarations and enforcing the size
// and depth limits. at is the path of the element being read, for errors.
func (p *parser) token(at string) (xml.Token, error) {
	t, err := p.d.Token()
	if err != nil {
		if p.cr.over {
			return nil, &Error{Msg: fmt.Sprintf("document is larger than %d bytes (Limits.MaxBytes)", p.lim.MaxBytes)}
		}
		if err == io.EOF {
			if p.depth > 0 {
				return nil, &Error{Path: at, Msg: "malformed XML: document ends inside the element"}
			}
			return nil, err
		}
		return nil, &Error{Path: at, Msg: "malformed XML: " + strings.TrimPrefix(err.Error(), "xml: ")}
	}
	switch t := t.(type) {
	case xml.Directive:
		return nil, &Error{Path: at, Msg: directiveMessage(t)}
	case xml.StartElement:
		p.depth++
		if p.depth > p.lim.MaxDepth {
			return nil, &Error{Path: join(at, t.Name.Local), Msg: fmt.Sprintf("elements nested deeper than %d (Limits.MaxDepth)", p.lim.MaxDepth)}
		}
	case xml.EndElement:
		p.depth--
	}
	return t, nil
}

func directiveMessage(d xml.Directive) string {
	word, _, _ := strings.Cut(strings.TrimSpace(string(d)), " ")
	switch w := strings.ToUpper(word); w {
	case "DOCTYPE":
		return "DOCTYPE declaration refused: CAP needs no DTD, and DTDs carry entity attacks (XXE, billion laughs)"
	case "ENTITY":
		return "ENTITY declaration refused: CAP needs no entities"
	default:
		if len(w) > 20 {
			w = w[:20]
		}
		return fmt.Sprintf("<!%s> declaration refused: CAP needs no DTD", w)
	}
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "/" + name
}

func indexed(path, name string, i int) string { return fmt.Sprintf("%s/%s[%d]", path, name, i) }

// skip reads to the end of an element already started, keeping to the limits.
func (p *parser) skip(at string) error {
	for {
		t, err := p.token(at)
		if err != nil {
			return err
		}
		switch t := t.(type) {
		case xml.StartElement:
			if err := p.skip(join(at, t.Name.Local)); err != nil {
				return err
			}
		case xml.EndElement:
			return nil
		}
	}
}

// text reads the content of a simple element, trimmed of surrounding space.
func (p *parser) text(at string) (string, error) {
	var b strings.Builder
	for {
		t, err := p.token(at)
		if err != nil {
			return "", err
		}
		switch t := t.(type) {
		case xml.CharData:
			b.Write(t)
		case xml.StartElement:
			return "", &Error{Path: at, Msg: fmt.Sprintf("unexpected element <%s> inside a text element", t.Name.Local)}
		case xml.EndElement:
			return strings.TrimSpace(b.String()), nil
		}
	}
}

// once reports an element that CAP allows only once.
func once(seen map[string]bool, at, name string) error {
	if seen[name] {
		return &Error{Path: join(at, name), Msg: "given more than once"}
	}
	seen[name] = true
	return nil
}

func (p *parser) document() (*Alert, error) {
	for {
		t, err := p.token("")
		if err == io.EOF {
			return nil, &Error{Msg: "no root element: want a CAP <alert>"}
		}
		if err != nil {
			return nil, err
		}
		if se, ok := t.(xml.StartElement); ok {
			return p.root(se)
		}
	}
}

const (
	atomNS   = "http://www.w3.org/2005/Atom"
	edxlNS   = "urn:oasis:names:tc:emergency:EDXL:DE:1.0"
	capNSFor = "urn:oasis:names:tc:emergency:cap:"
)

func (p *parser) root(se xml.StartElement) (*Alert, error) {
	n := se.Name
	if n.Local == "alert" {
		return p.alert(se)
	}
	container := (n.Local == "entry" && n.Space == atomNS) || (n.Local == "item" && n.Space == "") ||
		(n.Local == "EDXLDistribution" && n.Space == edxlNS)
	if !container {
		what := "<" + n.Local + ">"
		if n.Space != "" {
			what += " in namespace " + n.Space
		}
		return nil, &Error{Path: n.Local, Msg: fmt.Sprintf("root element %s is not a CAP <alert>, nor an Atom <entry> or RSS <item> carrying one", what)}
	}
	// Look inside the feed entry for the alert, however deep.
	at := n.Local
	for {
		t, err := p.token(at)
		if err != nil {
			return nil, err
		}
		switch t := t.(type) {
		case xml.StartElement:
			if t.Name.Local == "alert" && strings.HasPrefix(t.Name.Space, capNSFor) {
				return p.alert(t)
			}
			at = join(at, t.Name.Local)
		case xml.EndElement:
			if p.depth == 0 {
				return nil, &Error{Path: n.Local, Msg: "carries no CAP <alert> inline; a feed entry that only links to the alert must be followed to fetch it"}
			}
			if i := strings.LastIndexByte(at, '/'); i >= 0 {
				at = at[:i]
			}
		}
	}
}

func (p *parser) alert(se xml.StartElement) (*Alert, error) {
	a := &Alert{}
	switch se.Name.Space {
	case Namespace12, "":
		a.Version = "1.2"
	case Namespace11:
		a.Version = "1.1"
	default:
		return nil, &Error{Path: "alert", Msg: fmt.Sprintf("namespace %q is not CAP 1.2 (%s) or 1.1", se.Name.Space, Namespace12)}
	}
	p.ns = se.Name.Space
	const at = "alert"
	seen := map[string]bool{}
	for {
		t, err := p.token(at)
		if err != nil {
			return nil, err
		}
		switch t := t.(type) {
		case xml.EndElement:
			return a, nil
		case xml.StartElement:
			name := t.Name.Local
			if t.Name.Space != p.ns {
				// An XML signature, or another profile's extension.
				if err := p.skip(join(at, name)); err != nil {
					return nil, err
				}
				continue
			}
			switch name {
			case "info":
				p.infos++
				path := indexed(at, "info", len(a.Infos)+1)
				if p.infos > p.lim.MaxInfos {
					return nil, &Error{Path: path, Msg: fmt.Sprintf("more than %d <info> blocks (Limits.MaxInfos)", p.lim.MaxInfos)}
				}
				in, err := p.info(path)
				if err != nil {
					return nil, err
				}
				a.Infos = append(a.Infos, in)
			case "code":
				s, err := p.text(join(at, name))
				if err != nil {
					return nil, err
				}
				if s != "" {
					a.Codes = append(a.Codes, s)
				}
			case "identifier", "sender", "sent", "status", "msgType", "source", "scope",
				"restriction", "addresses", "note", "references", "incidents":
				if err := once(seen, at, name); err != nil {
					return nil, err
				}
				path := join(at, name)
				s, err := p.text(path)
				if err != nil {
					return nil, err
				}
				switch name {
				case "identifier":
					a.Identifier = s
				case "sender":
					a.Sender = s
				case "sent":
					a.Sent = p.time(path, s)
				case "status":
					a.Status = p.enum(path, "status", statuses, s)
				case "msgType":
					a.MsgType = p.enum(path, "msgType", msgTypes, s)
				case "source":
					a.Source = s
				case "scope":
					a.Scope = p.enum(path, "scope", scopes, s)
				case "restriction":
					a.Restriction = s
				case "addresses":
					a.Addresses = s
				case "note":
					a.Note = s
				case "references":
					a.References = p.references(path, s)
				case "incidents":
					a.Incidents = s
				}
			default:
				if err := p.skip(join(at, name)); err != nil {
					return nil, err
				}
			}
		}
	}
}

func (p *parser) info(at string) (Info, error) {
	var in Info
	seen := map[string]bool{}
	for {
		t, err := p.token(at)
		if err != nil {
			return in, err
		}
		switch t := t.(type) {
		case xml.EndElement:
			return in, nil
		case xml.StartElement:
			name := t.Name.Local
			if t.Name.Space != p.ns {
				if err := p.skip(join(at, name)); err != nil {
					return in, err
				}
				continue
			}
			switch name {
			case "category", "responseType":
				path := join(at, name)
				s, err := p.text(path)
				if err != nil {
					return in, err
				}
				if name == "category" {
					in.Categories = append(in.Categories, p.enum(path, "category", categories, s))
				} else {
					in.ResponseTypes = append(in.ResponseTypes, p.enum(path, "responseType", responseTypes, s))
				}
			case "eventCode", "parameter":
				n := len(in.EventCodes)
				if name == "parameter" {
					n = len(in.Parameters)
				}
				v, err := p.pair(indexed(at, name, n+1))
				if err != nil {
					return in, err
				}
				if name == "eventCode" {
					in.EventCodes = append(in.EventCodes, v)
				} else {
					in.Parameters = append(in.Parameters, v)
				}
			case "resource":
				r, err := p.resource(indexed(at, name, len(in.Resources)+1))
				if err != nil {
					return in, err
				}
				in.Resources = append(in.Resources, r)
			case "area":
				p.areas++
				path := indexed(at, name, len(in.Areas)+1)
				if p.areas > p.lim.MaxAreas {
					return in, &Error{Path: path, Msg: fmt.Sprintf("more than %d <area> elements (Limits.MaxAreas)", p.lim.MaxAreas)}
				}
				ar, err := p.area(path)
				if err != nil {
					return in, err
				}
				in.Areas = append(in.Areas, ar)
			case "language", "event", "urgency", "severity", "certainty", "audience", "effective", "onset",
				"expires", "senderName", "headline", "description", "instruction", "web", "contact":
				if err := once(seen, at, name); err != nil {
					return in, err
				}
				path := join(at, name)
				s, err := p.text(path)
				if err != nil {
					return in, err
				}
				switch name {
				case "language":
					in.Language = strings.ReplaceAll(s, "_", "-") // zh_CN, as some feeds write it
				case "event":
					in.Event = s
				case "urgency":
					in.Urgency = p.enum(path, "urgency", urgencies, s)
				case "severity":
					in.Severity = p.enum(path, "severity", severities, s)
				case "certainty":
					in.Certainty = p.enum(path, "certainty", certainties, s)
				case "audience":
					in.Audience = s
				case "effective":
					in.Effective = p.time(path, s)
				case "onset":
					in.Onset = p.time(path, s)
				case "expires":
					in.Expires = p.time(path, s)
				case "senderName":
					in.SenderName = s
				case "headline":
					in.Headline = s
				case "description":
					in.Description = s
				case "instruction":
					in.Instruction = s
				case "web":
					in.Web = s
				case "contact":
					in.Contact = s
				}
			default:
				if err := p.skip(join(at, name)); err != nil {
					return in, err
				}
			}
		}
	}
}

// pair reads a valueName/value element (eventCode, parameter, geocode).
func (p *parser) pair(at string) (Value, error) {
	var v Value
	seen := map[string]bool{}
	for {
		t, err := p.token(at)
		if err != nil {
			return v, err
		}
		switch t := t.(type) {
		case xml.EndElement:
			// An empty <value/> is common (and valid); a missing one is not.
			if !seen["value"] && !p.bad[join(at, "value")] {
				p.report(join(at, "value"), "required element missing")
			}
			return v, nil
		case xml.StartElement:
			name := t.Name.Local
			if t.Name.Space != p.ns || (name != "valueName" && name != "value") {
				if err := p.skip(join(at, name)); err != nil {
					return v, err
				}
				continue
			}
			if err := once(seen, at, name); err != nil {
				return v, err
			}
			s, err := p.text(join(at, name))
			if err != nil {
				return v, err
			}
			if name == "valueName" {
				v.Name = s
			} else {
				v.Value = s
			}
		}
	}
}

func (p *parser) resource(at string) (Resource, error) {
	var r Resource
	seen := map[string]bool{}
	for {
		t, err := p.token(at)
		if err != nil {
			return r, err
		}
		switch t := t.(type) {
		case xml.EndElement:
			return r, nil
		case xml.StartElement:
			name := t.Name.Local
			var field *string
			switch name {
			case "resourceDesc":
				field = &r.Desc
			case "mimeType":
				field = &r.MimeType
			case "size":
				field = &r.Size
			case "uri":
				field = &r.URI
			case "derefUri":
				field = &r.DerefURI
			case "digest":
				field = &r.Digest
			}
			if t.Name.Space != p.ns || field == nil {
				if err := p.skip(join(at, name)); err != nil {
					return r, err
				}
				continue
			}
			if err := once(seen, at, name); err != nil {
				return r, err
			}
			if *field, err = p.text(join(at, name)); err != nil {
				return r, err
			}
		}
	}
}

func (p *parser) area(at string) (Area, error) {
	var ar Area
	seen := map[string]bool{}
	var nPoly, nCircle int
	for {
		t, err := p.token(at)
		if err != nil {
			return ar, err
		}
		switch t := t.(type) {
		case xml.EndElement:
			return ar, nil
		case xml.StartElement:
			name := t.Name.Local
			if t.Name.Space != p.ns {
				if err := p.skip(join(at, name)); err != nil {
					return ar, err
				}
				continue
			}
			switch name {
			case "geocode":
				v, err := p.pair(indexed(at, name, len(ar.Geocodes)+1))
				if err != nil {
					return ar, err
				}
				ar.Geocodes = append(ar.Geocodes, v)
			case "polygon", "circle":
				var path string
				if name == "polygon" {
					nPoly++
					path = indexed(at, name, nPoly)
				} else {
					nCircle++
					path = indexed(at, name, nCircle)
				}
				p.shapes++
				if p.shapes > p.lim.MaxShapes {
					return ar, &Error{Path: path, Msg: fmt.Sprintf("more than %d polygons and circles (Limits.MaxShapes)", p.lim.MaxShapes)}
				}
				s, err := p.text(path)
				if err != nil {
					return ar, err
				}
				if s == "" {
					continue // real feeds send <polygon></polygon> for "none"
				}
				if name == "circle" {
					if c, err := parseCircle(s); err != nil {
						p.report(path, "%q is not a CAP circle (want \"lat,lon radius-km\", e.g. \"25.04,102.71 5\"): %v", clip(s), err)
					} else {
						ar.Circles = append(ar.Circles, c)
					}
					continue
				}
				poly, err := parsePolygon(s)
				if err != nil {
					p.report(path, "%q is not a CAP polygon (want closed \"lat,lon lat,lon …\", at least 4 points): %v", clip(s), err)
					continue
				}
				p.points += len(poly)
				if p.points > p.lim.MaxPoints {
					return ar, &Error{Path: path, Msg: fmt.Sprintf("more than %d polygon points (Limits.MaxPoints)", p.lim.MaxPoints)}
				}
				ar.Polygons = append(ar.Polygons, poly)
			case "areaDesc", "altitude", "ceiling":
				if err := once(seen, at, name); err != nil {
					return ar, err
				}
				s, err := p.text(join(at, name))
				if err != nil {
					return ar, err
				}
				switch name {
				case "areaDesc":
					ar.Desc = s
				case "altitude":
					ar.Altitude = s
				case "ceiling":
					ar.Ceiling = s
				}
			default:
				if err := p.skip(join(at, name)); err != nil {
					return ar, err
				}
			}
		}
	}
}

// report records a problem with an element's value; parsing goes on so that
// every problem is reported at once.
func (p *parser) report(path, format string, args ...any) {
	p.bad[path] = true
	p.probs.add(path, format, args...)
}

func (p *parser) enum(path, what string, enum []string, s string) string {
	if s == "" {
		return ""
	}
	if c := canonical(enum, s); c != "" {
		return c
	}
	p.report(path, "%q is not a CAP %s (want %s)", clip(s), what, orList(enum))
	return s
}

func (p *parser) time(path, s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	t, err := ParseTime(s)
	if err != nil {
		p.report(path, "%v", err)
	}
	return t
}

func (p *parser) references(path, s string) []Reference {
	refs, err := ParseReferences(s)
	if err != nil {
		p.report(path, "%v", err)
	}
	return refs
}

// ParseTime reads a CAP date-time. Besides CAP's own form it accepts what
// real feeds send and RFC 3339 allows, "Z" and fractional seconds, dropping
// the fraction.
func ParseTime(s string) (time.Time, error) {
	if t, err := time.Parse(TimeLayout, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.Truncate(time.Second), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a CAP date-time (want 2026-07-01T18:00:00+08:00)", clip(s))
}

// ParseReferences reads the space-separated "sender,identifier,sent"
// triples of <references>. A lone identifier without commas is taken as is.
func ParseReferences(s string) ([]Reference, error) {
	var out []Reference
	for _, f := range strings.Fields(s) {
		parts := strings.Split(f, ",")
		switch len(parts) {
		case 1:
			out = append(out, Reference{Identifier: f})
		case 3:
			t, err := ParseTime(parts[2])
			if err != nil {
				return out, fmt.Errorf("reference %q: %w", clip(f), err)
			}
			if parts[0] == "" || parts[1] == "" {
				return out, fmt.Errorf("reference %q: want sender,identifier,sent", clip(f))
			}
			out = append(out, Reference{Sender: parts[0], Identifier: parts[1], Sent: t})
		default:
			return out, fmt.Errorf("reference %q: want sender,identifier,sent", clip(f))
		}
	}
	return out, nil
}

var decimalRE = regexp.MustCompile(`^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$`)
var numberRE = regexp.MustCompile(`^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,3})?$`)

func parseNumber(s string) (float64, error) {
	if !numberRE.MatchString(s) {
		return 0, fmt.Errorf("%q is not a number", clip(s))
	}
	return strconv.ParseFloat(s, 64)
}

func parsePoint(s string) ([2]float64, error) {
	la, lo, ok := strings.Cut(s, ",")
	if !ok {
		return [2]float64{}, fmt.Errorf("point %q has no comma", clip(s))
	}
	lat, err := parseNumber(la)
	if err != nil {
		return [2]float64{}, err
	}
	lon, err := parseNumber(lo)
	if err != nil {
		return [2]float64{}, err
	}
	if err := checkLatLon(lat, lon); err != nil {
		return [2]float64{}, err
	}
	return [2]float64{lat, lon}, nil
}

func checkLatLon(lat, lon float64) error {
	if !(lat >= -90 && lat <= 90) {
		return fmt.Errorf("latitude %v is outside -90..90", lat)
	}
	if !(lon >= -180 && lon <= 180) {
		return fmt.Errorf("longitude %v is outside -180..180", lon)
	}
	return nil
}

// parsePolygon reads a CAP polygon. CAP wants the ring closed; an open ring
// of at least 3 points is closed here, since real feeds send them.
func parsePolygon(s string) ([][2]float64, error) {
	fields := strings.Fields(s)
	poly := make([][2]float64, 0, len(fields)+1)
	for _, f := range fields {
		pt, err := parsePoint(f)
		if err != nil {
			return nil, err
		}
		poly = append(poly, pt)
	}
	if len(poly) > 0 && poly[0] != poly[len(poly)-1] {
		poly = append(poly, poly[0])
	}
	if len(poly) < 4 {
		n := len(poly)
		if n > 1 {
			n--
		}
		return nil, fmt.Errorf("%d distinct points", n)
	}
	return poly, nil
}

func parseCircle(s string) (Circle, error) {
	fields := strings.Fields(s)
	if len(fields) != 2 {
		return Circle{}, fmt.Errorf("want a point and a radius")
	}
	pt, err := parsePoint(fields[0])
	if err != nil {
		return Circle{}, err
	}
	r, err := parseNumber(fields[1])
	if err != nil {
		return Circle{}, err
	}
	if r < 0 || r > 20040 {
		return Circle{}, fmt.Errorf("radius %v km is outside 0..20040", r)
	}
	return Circle{Lat: pt[0], Lon: pt[1], RadiusKm: r}, nil
}

// clip shortens a value quoted in an error message.
func clip(s string) string {
	const n = 60
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8Start(s[i]) {
		i--
	}
	return s[:i] + "…"
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

func orList(enum []string) string {
	if len(enum) == 1 {
		return enum[0]
	}
	return strings.Join(enum[:len(enum)-1], ", ") + " or " + enum[len(enum)-1]
}

// problems collects every problem with a document, in the order found.
type problems struct{ list []error }

// maxProblems keeps the error of a hostile document short.
const maxProblems = 20

func (p *problems) add(path, format string, args ...any) {
	p.list = append(p.list, &Error{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (p *problems) err() error {
	if len(p.list) <= maxProblems {
		return errors.Join(p.list...)
	}
	more := &Error{Msg: fmt.Sprintf("and %d more problems", len(p.list)-maxProblems)}
	return errors.Join(append(p.list[:maxProblems:maxProblems], more)...)
}

// charsetReader decodes the charsets real CAP feeds declare besides UTF-8.
func charsetReader(label string, in io.Reader) (io.Reader, error) {
	switch l := strings.ToLower(strings.TrimSpace(label)); l {
	case "iso-8859-1", "iso8859-1", "iso_8859-1", "latin1", "latin-1", "l1", "cp819", "ibm819", "iso-ir-100", "csisolatin1":
		return &singleByteReader{r: in}, nil
	case "windows-1252", "cp1252", "x-cp1252":
		return &singleByteReader{r: in, table: &cp1252}, nil
	case "us-ascii", "ascii", "utf8":
		return in, nil // a byte beyond ASCII then fails as invalid UTF-8
	case "gb2312", "gbk", "gb18030", "cp936", "euc-cn", "x-gbk", "big5", "big5-hkscs":
		return nil, fmt.Errorf("charset %s is not supported: decoding it needs golang.org/x/text, which warngate does not use; send the document as UTF-8", label)
	}
	return nil, fmt.Errorf("charset %q is not supported: send UTF-8 or ISO-8859-1", clip(label))
}

// singleByteReader decodes ISO-8859-1 (table nil) or windows-1252 into UTF-8.
type singleByteReader struct {
	r     io.Reader
	table *[32]rune // runes for bytes 0x80-0x9F
	buf   []byte
	out   bytes.Buffer
}

func (s *singleByteReader) Read(p []byte) (int, error) {
	for s.out.Len() == 0 {
		if s.buf == nil {
			s.buf = make([]byte, 4096)
		}
		n, err := s.r.Read(s.buf)
		for _, b := range s.buf[:n] {
			switch {
			case b < 0x80:
				s.out.WriteByte(b)
			case b < 0xA0 && s.table != nil:
				s.out.WriteRune(s.table[b-0x80])
			default:
				s.out.WriteRune(rune(b))
			}
		}
		if err != nil && s.out.Len() == 0 {
			return 0, err
		}
		if n == 0 && err == nil {
			return 0, nil
		}
	}
	return s.out.Read(p)
}

// cp1252 maps windows-1252 bytes 0x80-0x9F; undefined ones stay C1 controls.
var cp1252 = [32]rune{
	'€', 0x81, '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', 0x8D, 'Ž', 0x8F,
	0x90, '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', 0x9D, 'ž', 'Ÿ',
}
