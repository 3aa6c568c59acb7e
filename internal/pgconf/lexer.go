package pgconf

import (
	"fmt"
	"strings"
)

type tokenKind int

const (
	tokEOF tokenKind = iota
	tokEOL
	tokID
	tokQualifiedID
	tokString
	tokUnquoted
	tokInteger
	tokReal
	tokEquals
	tokError
)

type token struct {
	kind tokenKind
	text string
	line int
}

// lexer splits a configuration file into tokens like guc-file.l: flex picks
// the longest match, and among equal lengths the rule listed first (ID,
// QUALIFIED_ID, STRING, UNQUOTED_STRING, INTEGER, REAL).
type lexer struct {
	src  string
	pos  int
	line int
}

func newLexer(src string) *lexer { return &lexer{src: src, line: 1} }

func isLetter(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80
}
func isDigit(c byte) bool         { return c >= '0' && c <= '9' }
func isLetterOrDigit(c byte) bool { return isLetter(c) || isDigit(c) }
func isHex(c byte) bool {
	return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}
func isUnitLetter(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }

func (l *lexer) next() token {
	for l.pos < len(l.src) {
		c := l.src[l.pos]
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			l.pos++
		case c == '#':
			for l.pos < len(l.src) && l.src[l.pos] != '\n' {
				l.pos++
			}
		default:
			return l.scan()
		}
	}
	return token{kind: tokEOF, line: l.line}
}

func (l *lexer) scan() token {
	s := l.src[l.pos:]
	line := l.line
	if s[0] == '\n' {
		l.pos++
		l.line++
		return token{kind: tokEOL, line: line}
	}
	if s[0] == '=' {
		l.pos++
		return token{kind: tokEquals, text: "=", line: line}
	}
	// Try every rule; keep the longest match, earliest rule on a tie.
	best, kind := 0, tokError
	try := func(n int, k tokenKind) {
		if n > best {
			best, kind = n, k
		}
	}
	try(matchID(s), tokID)
	try(matchQualifiedID(s), tokQualifiedID)
	try(matchString(s), tokString)
	try(matchUnquoted(s), tokUnquoted)
	try(matchInteger(s), tokInteger)
	try(matchReal(s), tokReal)
	if best == 0 {
		l.pos++ // "." rule: one character, GUC_ERROR
		return token{kind: tokError, text: s[:1], line: line}
	}
	l.pos += best
	return token{kind: kind, text: s[:best], line: line}
}

func matchID(s string) int {
	if len(s) == 0 || !isLetter(s[0]) {
		return 0
	}
	i := 1
	for i < len(s) && isLetterOrDigit(s[i]) {
		i++
	}
	return i
}

func matchQualifiedID(s string) int {
	n := matchID(s)
	if n == 0 || n >= len(s) || s[n] != '.' {
		return 0
	}
	m := matchID(s[n+1:])
	if m == 0 {
		return 0
	}
	return n + 1 + m
}

// STRING: \'([^'\\\n]|\\.|\'\')*\'
func matchString(s string) int {
	if len(s) == 0 || s[0] != '\'' {
		return 0
	}
	i := 1
	for i < len(s) {
		switch c := s[i]; {
		case c == '\\':
			if i+1 >= len(s) || s[i+1] == '\n' {
				return 0 // "\\." does not match a newline
			}
			i += 2
		case c == '\'':
			if i+1 < len(s) && s[i+1] == '\'' {
				i += 2
				continue
			}
			return i + 1
		case c == '\n':
			return 0
		default:
			i++
		}
	}
	return 0
}

// UNQUOTED_STRING: {LETTER}({LETTER_OR_DIGIT}|[-._:/])*
func matchUnquoted(s string) int {
	if len(s) == 0 || !isLetter(s[0]) {
		return 0
	}
	i := 1
	for i < len(s) && (isLetterOrDigit(s[i]) || strings.IndexByte("-._:/", s[i]) >= 0) {
		i++
	}
	return i
}

func matchSign(s string) int {
	if len(s) > 0 && (s[0] == '-' || s[0] == '+') {
		return 1
	}
	return 0
}

func matchUnits(s string, i int) int {
	for i < len(s) && isUnitLetter(s[i]) {
		i++
	}
	return i
}

// INTEGER: {SIGN}?({DIGIT}+|0x{HEXDIGIT}+){UNIT_LETTER}*
func matchInteger(s string) int {
	i := matchSign(s)
	best := 0
	// decimal digits
	j := i
	for j < len(s) && isDigit(s[j]) {
		j++
	}
	if j > i {
		best = matchUnits(s, j)
	}
	// hex
	if strings.HasPrefix(s[i:], "0x") {
		k := i + 2
		for k < len(s) && isHex(s[k]) {
			k++
		}
		if k > i+2 {
			if n := matchUnits(s, k); n > best {
				best = n
			}
		}
	}
	return best
}

// REAL: {SIGN}?({DIGIT}+\.{DIGIT}*{EXPONENT}?|\.{DIGIT}+{EXPONENT}?|{DIGIT}+{EXPONENT}){UNIT_LETTER}*
func matchReal(s string) int {
	i := matchSign(s)
	digits := func(j int) int {
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		return j
	}
	exponent := func(j int) int {
		if j < len(s) && (s[j] == 'e' || s[j] == 'E') {
			k := j + 1
			if k < len(s) && (s[k] == '+' || s[k] == '-') {
				k++
			}
			if m := digits(k); m > k {
				return m
			}
		}
		return j
	}
	best := 0
	if d := digits(i); d > i {
		if d < len(s) && s[d] == '.' {
			best = max(best, matchUnits(s, exponent(digits(d+1))))
		}
		if e := exponent(d); e > d {
			best = max(best, matchUnits(s, e))
		}
	} else if i < len(s) && s[i] == '.' {
		if d := digits(i + 1); d > i+1 {
			best = max(best, matchUnits(s, exponent(d)))
		}
	}
	return best
}

// unquote undoes a STRING token as GUC_scanstr does.
func unquote(tok string) string {
	s := tok[1 : len(tok)-1]
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\'' && i+1 < len(s) && s[i+1] == '\'' {
			b.WriteByte('\'')
			i++
			continue
		}
		if c != '\\' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch s[i] {
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case '0', '1', '2', '3', '4', '5', '6', '7':
			v := 0
			j := i
			for ; j < len(s) && j < i+3 && s[j] >= '0' && s[j] <= '7'; j++ {
				v = v*8 + int(s[j]-'0')
			}
			b.WriteByte(byte(v))
			i = j - 1
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func (t token) describe() string {
	switch t.kind {
	case tokEOL:
		return "end of line"
	case tokEOF:
		return "end of file"
	}
	return fmt.Sprintf("%q", t.text)
}
