package api

import (
	"mime"
	"strconv"
	"strings"
)

// wantsJSON reads an Accept header as the list it is (RFC 9110 12.5.1:
// "application/json, */*;q=0.1"): JSON when application/json is acceptable
// and not less preferred than application/octet-stream. Wildcards alone
// keep the raw reply.
func wantsJSON(accept string) bool {
	jsonQ, rawQ := -1.0, -1.0
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if s, ok := params["q"]; ok {
			if v, err := strconv.ParseFloat(s, 64); err == nil {
				q = v
			}
		}
		switch mt {
		case "application/json":
			jsonQ = max(jsonQ, q)
		case "application/octet-stream":
			rawQ = max(rawQ, q)
		}
	}
	return jsonQ > 0 && jsonQ >= rawQ
}
