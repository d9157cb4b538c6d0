/* Unit tests: the ${...} language, the legacy forms, XPath and templates,
 * evaluated against a message built here. */
#include "config.h"

#include <libxml/parser.h>
#include <stdlib.h>
#include <string.h>

#include "cu_main.h"
#include "expr/expr.h"
#include "runtime/errors.h"
#include "runtime/msg.h"

static cmi_arena_t *cfg; /* compiled expressions live here, as in a deployment */
static cmi_msg_t *msg;   /* the JSON message */
static cmi_msg_t *xmsg;  /* the XML message */
static xmlDocPtr scope_doc; /* an element declaring xmlns:p for XPath prefixes */

static const char *PAYLOAD =
    "{\"name\": \"John\", \"age\": 30, \"price\": 8.5, \"active\": true, \"nothing\": null,"
    " \"items\": [{\"id\": 1, \"price\": 10.5, \"tags\": [\"a\", \"b\"]}, {\"id\": 2, \"price\": 20, \"tags\": []},"
    "            {\"id\": 3, \"price\": 5.25}],"
    " \"address\": {\"city\": \"Colombo\", \"zip\": \"00100\", \"first name\": \"x\"},"
    " \"text\": \"  Hello World  \", \"csv\": \"a,b,,c\", \"empty\": \"\", \"unicode\": \"h\\u00e9llo\","
    " \"nested\": {\"a\": {\"b\": {\"c\": 42}}}, \"and\": \"kw\"}";

static const char *XML_PAYLOAD =
    "<order xmlns:p=\"urn:p\"><id>7</id><p:item sku=\"A1\">pen</p:item><p:item sku=\"B2\">ink</p:item>"
    "<note>a &amp; b</note><gift> </gift></order>";

static cmi_msg_t *make_msg(const char *body, const char *ct)
{
    cmi_msg_t *m = cmi_msg_create(NULL, NULL, NULL, NULL);
    cmi_msg_set_payload(m, body, strlen(body), ct);
    m->method = "GET";
    m->request_uri = "/shop/items/123?qty=3";
    m->sub_path = "/items/123";
    cmi_msg_var_set(m, "count", cmi_value_int(5));
    cmi_msg_var_set(m, "ratio", cmi_value_number(2.5));
    cmi_msg_var_set(m, "label", cmi_value_cstring("abc"));
    cmi_msg_var_set(m, "flag", cmi_value_bool(1));
    cmi_msg_var_set(m, "quoted", cmi_value_cstring("say \"hi\"\n"));
    cmi_msg_var_set(m, "lt", cmi_value_cstring("1<2 & 3"));
    cmi_value_t obj = {.type = CMI_VAL_JSON};
    obj.u.json = cmi_msg_own_json(m, json_pack("{s:s, s:[i,i]}", "k", "v", "n", 1, 2));
    cmi_msg_var_set(m, "obj", obj);
    cmi_msg_header_add_inbound(m, "Content-Type", 12, ct, strlen(ct));
    cmi_msg_header_add_inbound(m, "X-Count", 7, "7", 1);
    cmi_msg_header_add_inbound(m, "X-Name", 6, "Bob", 3);
    cmi_msg_prop_set(m, CMI_SCOPE_DEFAULT, "p1", cmi_value_cstring("hello"));
    cmi_msg_prop_set(m, CMI_SCOPE_DEFAULT, "pnum", cmi_value_cstring("42"));
    cmi_msg_prop_set(m, CMI_SCOPE_AXIS2, "HTTP_SC", cmi_value_int(201));
    cmi_kvlist_add(m->arena, &m->query_params, "qty", cmi_value_cstring("3"));
    cmi_kvlist_add(m->arena, &m->query_params, "q", cmi_value_cstring("red shoes"));
    cmi_kvlist_add(m->arena, &m->path_params, "id", cmi_value_cstring("123"));
    return m;
}

static int setup(void)
{
    setenv("CMI_TEST_CONFIG", "cfgval", 1);
    cfg = cmi_arena_create(0);
    msg = make_msg(PAYLOAD, "application/json");
    xmsg = make_msg(XML_PAYLOAD, "application/xml");
    const char *scope = "<s xmlns:p=\"urn:p\" xmlns=\"http://ws.apache.org/ns/synapse\"/>";
    scope_doc = xmlReadMemory(scope, (int)strlen(scope), NULL, NULL, 0);
    return 0;
}

static int teardown(void)
{
    cmi_msg_release(msg);
    cmi_msg_release(xmsg);
    cmi_arena_destroy(cfg);
    xmlFreeDoc(scope_doc);
    return 0;
}

/* ---- the case table ---------------------------------------------------- */

typedef struct {
    const char *expr;     /* an attribute value: "${...}", a legacy form, XPath */
    const char *want;     /* the result as text; NULL when an error is expected */
    const char *error;    /* substring of the compile or evaluation error */
    int xml;              /* evaluate against the XML message */
} ecase_t;

static const ecase_t cases[] = {
    /* literals */
    {"${1}", "1", NULL, 0},
    {"${-5}", "-5", NULL, 0},
    {"${2.5}", "2.5", NULL, 0},
    {"${1e3}", "1000", NULL, 0},
    {"${\"str\"}", "str", NULL, 0},
    {"${'single'}", "single", NULL, 0},
    {"${\"a\\tb\"}", "a\tb", NULL, 0},
    {"${\"\\u00e9\"}", "\xc3\xa9", NULL, 0},
    {"${true}", "true", NULL, 0},
    {"${false}", "false", NULL, 0},
    {"${null}", "", NULL, 0},
    {"${[1, \"a\", true]}", "[1,\"a\",true]", NULL, 0},
    /* payload */
    {"${payload.name}", "John", NULL, 0},
    {"${$.name}", "John", NULL, 0},
    {"${payload.age}", "30", NULL, 0},
    {"${payload.price}", "8.5", NULL, 0},
    {"${payload.active}", "true", NULL, 0},
    {"${payload.nothing}", "", NULL, 0},
    {"${payload.missing}", "", NULL, 0},
    {"${payload.missing.deeper[3].x}", "", NULL, 0},
    {"${payload.name.first}", "", NULL, 0},
    {"${payload.items[0].id}", "1", NULL, 0},
    {"${payload.items[-1].id}", "3", NULL, 0},
    {"${payload.items[5]}", "", NULL, 0},
    {"${payload.items[1][\"price\"]}", "20", NULL, 0},
    {"${payload[\"address\"][\"first name\"]}", "x", NULL, 0},
    {"${payload.address.city}", "Colombo", NULL, 0},
    {"${payload.address.zip}", "00100", NULL, 0},
    {"${payload.items[*].id}", "[1,2,3]", NULL, 0},
    {"${payload.items.*.id}", "[1,2,3]", NULL, 0},
    {"${payload..id}", "[1,2,3]", NULL, 0},
    {"${payload..c}", "[42]", NULL, 0},
    {"${payload.items[0:2].id}", "[1,2]", NULL, 0},
    {"${payload.items[-2:].id}", "[2,3]", NULL, 0},
    {"${payload.items[:1].id}", "[1]", NULL, 0},
    {"${payload.items[0,2].id}", "[1,3]", NULL, 0},
    {"${payload.items[?(@.price > 9)].id}", "[1,2]", NULL, 0},
    {"${payload.items[?(@.id == vars.count - 3)].id}", "[2]", NULL, 0},
    {"${payload.items[?(@.missing)].id}", "[]", NULL, 0},
    {"${payload.items[vars.count - 4].id}", "2", NULL, 0},
    {"${payload.items.length()}", "3", NULL, 0},
    {"${payload.name.length()}", "4", NULL, 0},
    {"${payload.items[*].price.sum()}", "35.75", NULL, 0},
    {"${payload.items[*].price.max()}", "20", NULL, 0},
    {"${payload.items[*].price.min()}", "5.25", NULL, 0},
    {"${payload.items[*].id.avg()}", "2", NULL, 0},
    {"${payload.items[*].id.first()}", "1", NULL, 0},
    {"${payload.items[*].id.last()}", "3", NULL, 0},
    {"${payload.address.keys()}", "[\"city\",\"zip\",\"first name\"]", NULL, 0},
    {"${payload.items[0].tags}", "[\"a\",\"b\"]", NULL, 0},
    {"${payload.nested.a.b.c}", "42", NULL, 0},
    {"${payload.and}", "kw", NULL, 0},
    {"${payload.empty}", "", NULL, 0},
    {"${payload.items[0].tags.sum()}", NULL, "needs an array of numbers", 0},
    {"${payload.items[*].name.sum()}", "", NULL, 0},
    /* variables */
    {"${vars.count}", "5", NULL, 0},
    {"${vars.ratio}", "2.5", NULL, 0},
    {"${vars.label}", "abc", NULL, 0},
    {"${vars.flag}", "true", NULL, 0},
    {"${vars.obj.k}", "v", NULL, 0},
    {"${vars.obj.n[1]}", "2", NULL, 0},
    {"${vars[\"label\"]}", "abc", NULL, 0},
    {"${vars.missing}", "", NULL, 0},
    {"${vars.obj}", "{\"k\":\"v\",\"n\":[1,2]}", NULL, 0},
    /* headers */
    {"${headers[\"Content-Type\"]}", "application/json", NULL, 0},
    {"${headers.X-Count}", "7", NULL, 0},
    {"${headers[\"x-name\"]}", "Bob", NULL, 0},
    {"${headers.Missing}", "", NULL, 0},
    {"${headers.X-Count + 1}", "8", NULL, 0},
    /* properties */
    {"${props.synapse.p1}", "hello", NULL, 0},
    {"${properties.synapse.pnum + 1}", "43", NULL, 0},
    {"${props.axis2.HTTP_SC}", "201", NULL, 0},
    /* MI's docs: a property without a scope, and var. for vars. */
    {"${properties.p1}", "hello", NULL, 0},
    {"${props.pnum + 1}", "43", NULL, 0},
    {"${var.label}", "abc", NULL, 0},
    {"${props.other..x}", NULL, "the scope must be 'synapse' or 'axis2'", 0},
    {"${props.other[0]}", NULL, "the scope must be 'synapse' or 'axis2'", 0},
    {"${props.synapse.missing}", "", NULL, 0},
    {"${props.synapse[\"p1\"]}", "hello", NULL, 0},
    {"${props.synapse.MessageID == props.synapse.MessageID}", "true", NULL, 0},
    {"${props.axis2.HTTP_METHOD}", "GET", NULL, 0},
    /* parameters and configs */
    {"${params.queryParams.qty}", "3", NULL, 0},
    {"${params.queryParams.q}", "red shoes", NULL, 0},
    {"${params.pathParams.id}", "123", NULL, 0},
    {"${params.pathParams.id == \"123\"}", "true", NULL, 0},
    {"${params.functionParams.x}", "", NULL, 0},
    {"${configs.CMI_TEST_CONFIG}", "cfgval", NULL, 0},
    {"${configs.CMI_NOT_SET_ANYWHERE}", "", NULL, 0},
    /* arithmetic */
    {"${1 + 2}", "3", NULL, 0},
    {"${7 - 10}", "-3", NULL, 0},
    {"${6 * 7}", "42", NULL, 0},
    {"${7 / 2}", "3.5", NULL, 0},
    {"${9 / 3}", "3", NULL, 0},
    {"${7 % 3}", "1", NULL, 0},
    {"${7.5 % 2}", "1.5", NULL, 0},
    {"${2.5 * 2}", "5", NULL, 0},
    {"${payload.items[0].price * params.queryParams.qty}", "31.5", NULL, 0},
    {"${-payload.age}", "-30", NULL, 0},
    {"${-(2 + 3)}", "-5", NULL, 0},
    {"${2 + 3 * 4}", "14", NULL, 0},
    {"${(2 + 3) * 4}", "20", NULL, 0},
    {"${10 - 2 - 3}", "5", NULL, 0},
    {"${9223372036854775807 + 1}", "9.223372036854776e+18", NULL, 0},
    {"${1 / 0}", NULL, "division by zero", 0},
    {"${5 % 0}", NULL, "modulo by zero", 0},
    {"${\"a\" * 2}", NULL, "cannot apply '*' to string \"a\" and number 2", 0},
    {"${payload.name - 1}", NULL, "cannot apply '-'", 0},
    {"${payload.missing * 2}", NULL, "cannot apply '*' to null", 0},
    {"${-\"x\"}", NULL, "cannot negate", 0},
    /* strings */
    {"${\"a\" + \"b\"}", "ab", NULL, 0},
    {"${\"n=\" + 5}", "n=5", NULL, 0},
    {"${payload.name + \" \" + payload.address.city}", "John Colombo", NULL, 0},
    {"${5 + \"x\"}", "5x", NULL, 0},
    {"${\"x\" + null}", "x", NULL, 0},
    {"${vars.label + vars.count}", "abc5", NULL, 0},
    /* comparison */
    {"${1 < 2}", "true", NULL, 0},
    {"${2 <= 2}", "true", NULL, 0},
    {"${3 > 4}", "false", NULL, 0},
    {"${3 >= 3}", "true", NULL, 0},
    {"${\"a\" < \"b\"}", "true", NULL, 0},
    {"${1 == 1.0}", "true", NULL, 0},
    {"${\"1\" == 1}", "true", NULL, 0},
    {"${true == \"true\"}", "true", NULL, 0},
    {"${null == null}", "true", NULL, 0},
    {"${payload.missing == null}", "true", NULL, 0},
    {"${payload.nothing == null}", "true", NULL, 0},
    {"${payload.name != \"John\"}", "false", NULL, 0},
    {"${payload.age > 18}", "true", NULL, 0},
    {"${payload.missing > 1}", "false", NULL, 0},
    {"${vars.obj == vars.obj}", "true", NULL, 0},
    {"${\"abc\" > 1}", NULL, "cannot compare", 0},
    /* logic */
    {"${true && false}", "false", NULL, 0},
    {"${true || false}", "true", NULL, 0},
    {"${!true}", "false", NULL, 0},
    {"${!payload.active}", "false", NULL, 0},
    {"${payload.active && payload.age > 18}", "true", NULL, 0},
    {"${payload.missing && true}", "false", NULL, 0},
    {"${payload.age > 18 and payload.name == \"John\"}", "true", NULL, 0},
    {"${false or true}", "true", NULL, 0},
    {"${!\"true\"}", "false", NULL, 0},
    {"${!\"TRUE\"}", "false", NULL, 0},
    {"${!\"yes\"}", "true", NULL, 0},
    {"${false && (1 / 0 == 1)}", "false", NULL, 0},
    {"${true || 1 / 0}", "true", NULL, 0},
    {"${false || true && false}", "false", NULL, 0},
    /* conditional */
    {"${payload.age > 18 ? \"adult\" : \"child\"}", "adult", NULL, 0},
    {"${false ? 1 : 2}", "2", NULL, 0},
    {"${vars.count > 10 ? \"big\" : vars.count > 3 ? \"medium\" : \"small\"}", "medium", NULL, 0},
    {"${null ? \"a\" : \"b\"}", "b", NULL, 0},
    /* functions */
    {"${length(\"abc\")}", "3", NULL, 0},
    {"${length(payload.items)}", "3", NULL, 0},
    {"${length(payload.unicode)}", "5", NULL, 0},
    {"${length(payload.missing)}", "", NULL, 0},
    {"${length(5)}", NULL, "length(): needs a string, an array or an object", 0},
    {"${toUpper(\"abc\")}", "ABC", NULL, 0},
    {"${toLower(\"AbC\")}", "abc", NULL, 0},
    {"${toUpper(5)}", NULL, "toUpper(): argument 1 must be a string", 0},
    {"${subString(\"hello\", 1, 3)}", "el", NULL, 0},
    {"${subString(\"hello\", 2)}", "llo", NULL, 0},
    {"${substring(\"hello\", 0, 5)}", "hello", NULL, 0},
    {"${subString(\"hello\", 5)}", "", NULL, 0},
    {"${subString(\"hello\", 3, 10)}", NULL, "outside the string's 5 characters", 0},
    {"${subString(payload.unicode, 1, 2)}", "\xc3\xa9", NULL, 0},
    {"${contains(\"hello\", \"ell\")}", "true", NULL, 0},
    {"${contains(payload.items[0].tags, \"b\")}", "true", NULL, 0},
    {"${contains(payload.items[0].tags, \"z\")}", "false", NULL, 0},
    {"${startsWith(\"hello\", \"he\")}", "true", NULL, 0},
    {"${endsWith(\"hello\", \"lo\")}", "true", NULL, 0},
    {"${endsWith(\"hello\", \"hello!\")}", "false", NULL, 0},
    {"${trim(payload.text)}", "Hello World", NULL, 0},
    {"${replace(\"a-b-c\", \"-\", \"+\")}", "a+b+c", NULL, 0},
    {"${split(payload.csv, \",\")}", "[\"a\",\"b\",\"\",\"c\"]", NULL, 0},
    {"${split(\"a1b22c\", \"[0-9]+\")}", "[\"a\",\"b\",\"c\"]", NULL, 0},
    {"${split(\"a,b,,\", \",\")}", "[\"a\",\"b\"]", NULL, 0},
    {"${split(\"a b\", \" \")[1]}", "b", NULL, 0},
    {"${split(\"x\", \"(\")}", NULL, "invalid regular expression", 0},
    /* MI's (Java's) syntax, as filter, switch and property take it */
    {"${split(\"a1b22c\", \"\\\\d+\")}", "[\"a\",\"b\",\"c\"]", NULL, 0},
    {"${split(\"a \\t b\\nc\", \"\\\\s+\")}", "[\"a\",\"b\",\"c\"]", NULL, 0},
    {"${split(\"a-b_c\", \"\\\\W|_\")}", "[\"a\",\"b\",\"c\"]", NULL, 0},
    {"${split(\"aXbxc\", \"(?i)x\")}", "[\"a\",\"b\",\"c\"]", NULL, 0},
    {"${split(\"a.b\", \"\\\\.\")}", "[\"a\",\"b\"]", NULL, 0},
    {"${split(\"ab\", \"(?=b)\")}", NULL, "lookaround", 0},
    {"${split(\"aXaY\", \"^a\")}", "[\"\",\"XaY\"]", NULL, 0}, /* ^ at the start of the text only */
    {"${split(\"xa\", \"^a\")}", "[\"xa\"]", NULL, 0},
    {"${split(\"x\", \",+++\")}", NULL, "a quantifier may follow only a character", 0},
    {"${split(\"x\", \"(a+)+\")}", NULL, "a quantifier may follow only a character", 0},
    {"${split(\"x\", \"a{2}\")}", NULL, "bounded repetition", 0},
    {"${split(\"a  b\", \" +\")}", "[\"a\",\"b\"]", NULL, 0},
    {"${indexOf(\"hello\", \"l\")}", "2", NULL, 0},
    {"${indexOf(\"hello\", \"l\", 3)}", "3", NULL, 0},
    {"${indexOf(\"hello\", \"z\")}", "-1", NULL, 0},
    {"${charAt(\"hello\", 1)}", "e", NULL, 0},
    {"${charAt(\"hello\", 9)}", NULL, "outside the string", 0},
    {"${abs(-5)}", "5", NULL, 0},
    {"${abs(-2.5)}", "2.5", NULL, 0},
    {"${floor(2.7)}", "2", NULL, 0},
    {"${ceil(2.1)}", "3", NULL, 0},
    {"${round(2.5)}", "3", NULL, 0},
    {"${round(2.567, 2)}", "2.57", NULL, 0},
    {"${sqrt(16)}", "4", NULL, 0},
    {"${sqrt(-1)}", NULL, "is negative", 0},
    {"${pow(2, 10)}", "1024", NULL, 0},
    {"${log(1)}", "0", NULL, 0},
    {"${base64encode(\"hello\")}", "aGVsbG8=", NULL, 0},
    {"${base64decode(\"aGVsbG8=\")}", "hello", NULL, 0},
    {"${base64decode(\"aGk=\")}", "hi", NULL, 0},
    {"${base64decode(\"!!\")}", NULL, "not base64", 0},
    {"${base64decode(\"aGk\")}", "hi", NULL, 0},            /* padding optional, as Java's decoder */
    {"${base64decode(\"aGk=\\n\")}", NULL, "not base64", 0}, /* no whitespace, as Java's decoder */
    {"${base64decode(\"aG=k\")}", NULL, "not base64", 0},
    {"${base64encode(\"x\", \"ISO-8859-1\")}", NULL, "not supported by cmi yet", 0},
    {"${urlEncode(\"a b&c\")}", "a%20b%26c", NULL, 0},
    {"${urlEncode(\"~*+/.-_\")}", "%7E%2A%2B%2F.-_", NULL, 0},
    {"${urlDecode(\"a+b%26c\")}", "a b&c", NULL, 0},
    {"${isString(\"x\")}", "true", NULL, 0},
    {"${isNumber(1)}", "true", NULL, 0},
    {"${isNumber(\"1\")}", "false", NULL, 0},
    {"${isArray(payload.items)}", "true", NULL, 0},
    {"${isObject(payload.address)}", "true", NULL, 0},
    {"${isBoolean(true)}", "true", NULL, 0},
    {"${string(5)}", "5", NULL, 0},
    {"${integer(\"42\")}", "42", NULL, 0},
    {"${integer(3.9)}", "3", NULL, 0},
    {"${integer(\"x\")}", NULL, "is not a whole number", 0},
    {"${float(\"2.5\")}", "2.5", NULL, 0},
    {"${boolean(\"TRUE\")}", "true", NULL, 0},
    {"${boolean(\"yes\")}", NULL, "neither true nor false", 0},
    {"${object(\"{\\\"a\\\": 1}\").a}", "1", NULL, 0},
    {"${array(\"[1, 2]\")[1]}", "2", NULL, 0},
    {"${object(\"[1]\")}", NULL, "is not a JSON object", 0},
    {"${exists(payload.name)}", "true", NULL, 0},
    {"${exists(payload.missing)}", "false", NULL, 0},
    {"${not(true)}", "false", NULL, 0},
    {"${now() > 1700000000000}", "true", NULL, 0},
    {"${toUpper(payload.name) + \"!\"}", "JOHN!", NULL, 0},
    /* syntax errors, found when compiling */
    {"${}", NULL, "empty expression", 0},
    {"${payload.}", NULL, "expected a name after '.'", 0},
    {"${1 +}", NULL, "expected a value", 0},
    {"${(1}", NULL, "expected ')'", 0},
    {"${foo}", NULL, "unknown name 'foo'", 0},
    {"${nosuch(1)}", NULL, "unknown function 'nosuch'", 0},
    {"${length()}", NULL, "length() takes 1 argument, not 0", 0},
    {"${subString(\"a\")}", NULL, "subString() takes 2 to 3 arguments, not 1", 0},
    {"${payload.items[}", NULL, "expected a value", 0},
    {"${1 2}", NULL, "unexpected '2' after the end", 0},
    {"${'abc}", NULL, "unterminated string", 0},
    {"${\"\\q\"}", NULL, "unknown escape", 0},
    {"${vars}", NULL, "'vars' needs a name after it", 0},
    {"${props.other.x}", NULL, "the scope must be 'synapse' or 'axis2'", 0},
    {"${params.x.y}", NULL, "expected queryParams, pathParams or functionParams", 0},
    {"${@.a}", NULL, "only meaningful inside a filter", 0},
    {"${1 = 2}", NULL, "unexpected character '='", 0},
    {"${a & b}", NULL, "unexpected character '&'", 0},
    {"${formatDateTime(1, \"x\")}", NULL, "formatDateTime() is not supported by cmi yet", 0},
    {"${xpath(vars.x)}", NULL, "xpath() takes one string literal", 0},
    {"${payload.items[0}", NULL, "expected ']'", 0},
    {"${true ? 1}", NULL, "expected ':'", 0},
    /* legacy forms */
    {"get-property('p1')", "hello", NULL, 0},
    {"get-property('axis2', 'HTTP_SC')", "201", NULL, 0},
    {"get-property('transport', 'X-Name')", "Bob", NULL, 0},
    {"get-property('default', 'p1')", "hello", NULL, 0},
    {"get-property('missing')", "", NULL, 0},
    {"get-property('uri.var.id')", "123", NULL, 0},
    {"get-property('query.param.q')", "red shoes", NULL, 0},
    {"get-property('env', 'CMI_TEST_CONFIG')", "cfgval", NULL, 0},
    {"get-property('To')", "/shop/items/123?qty=3", NULL, 0},
    {"starts-with(get-property('MessageID'), 'urn:uuid:')", "true", NULL, 0},
    {"get-property('nosuchscope', 'x')", NULL, "unknown scope 'nosuchscope'", 0},
    {"$ctx:p1", "hello", NULL, 0},
    {"$trp:X-Name", "Bob", NULL, 0},
    {"$axis2:HTTP_SC", "201", NULL, 0},
    {"$url:qty", "3", NULL, 0},
    {"concat(get-property('p1'), '-', $ctx:pnum)", "hello-42", NULL, 0},
    {"fn:concat(get-property('p1'), '-', fn:upper-case('ab'), fn:lower-case('CD'))", "hello-ABcd", NULL, 0},
    {"fn:string-length(fn:substring-after('a=b', '='))", "1", NULL, 0},
    {"base64Encode('hi')", "aGk=", NULL, 0},
    {"base64Decode('aGk=')", "hi", NULL, 0},
    {"base64Decode('aGk')", "hi", NULL, 0},
    {"base64Decode('!!')", "", NULL, 0},
    {"base64Decode('aG=k')", "", NULL, 0},
    {"url-encode('a b')", "a%20b", NULL, 0}, /* MI's: commons-httpclient's encodePathQuery() */
    {"url-encode('http://h/a b+c?q=a b&r=x+y/z?')", "http://h/a%20b%2Bc?q=a%20b&r=x+y/z?", NULL, 0},
    {"json-eval($.name)", "John", NULL, 0},
    {"json-eval($.items[1].id)", "2", NULL, 0},
    {"json-eval($.items[*].id)", "[1,2,3]", NULL, 0},
    {"json-eval($.address)", "{\"city\":\"Colombo\",\"zip\":\"00100\",\"first name\":\"x\"}", NULL, 0},
    {"json-eval(name)", NULL, "json-eval() needs a JSON path starting with '$'", 0},
    {"//name", "John", NULL, 0},
    {"count(//items)", "3", NULL, 0},
    {"$body/jsonObject/address/city", "Colombo", NULL, 0},
    {"//items[2]/price", "20", NULL, 0},
    {"get-property(", NULL, "invalid XPath", 0},
    {"nosuch:fn()", NULL, "invalid XPath", 0},
    {"$nosuchvariable", NULL, "invalid XPath", 0},
    {"undeclared-fn()", NULL, "invalid XPath", 0},
    /* XPath over an XML payload */
    {"//id", "7", NULL, 1},
    {"/soapenv:Envelope/soapenv:Body/order/id", "7", NULL, 1},
    {"$body/order/id", "7", NULL, 1},
    {"$env/*[local-name()='Body']/order/id", "7", NULL, 1},
    {"count(//p:item)", "2", NULL, 1},
    {"//p:item[2]/@sku", "B2", NULL, 1},
    {"//note", "a & b", NULL, 1},
    /* an element with no text reads as its markup, as MI's stringValueOf */
    {"//gift", "<gift> </gift>", NULL, 1},
    {"string-length(//id) = 1", "true", NULL, 1},
    {"//nothing", "", NULL, 1},
    {"${xpath(\"//p:item[1]\")}", "pen", NULL, 1},
    {"${xpath(\"count(//p:item)\") * 10}", "20", NULL, 1},
    /* Synapse expressions read an XML payload as its JSON form (MI's
     * conversion: namespaces dropped, attributes "@name", repeated elements
     * an array, numbers typed) */
    {"${payload.id}", "", NULL, 1},
    {"${payload.order.id + 1}", "8", NULL, 1},
    {"${payload.order.note}", "a & b", NULL, 1},
    {"${payload.order.item[1]}", "{\"@sku\":\"B2\",\"$\":\"ink\"}", NULL, 1},
    {"${payload.order.item.length()}", "2", NULL, 1},
    {NULL, NULL, NULL, 0},
};

static void run_case(const ecase_t *c, int *failures)
{
    cmi_expr_error_t err = {0};
    xmlNodePtr scope = xmlDocGetRootElement(scope_doc);
    cmi_expr_t *e = cmi_expr_compile(cfg, c->expr, scope, &err);
    const char *got = NULL, *problem = NULL;
    cmi_msg_t *m = c->xml ? xmsg : msg;
    if (e == NULL) {
        problem = err.message;
    } else {
        cmi_value_t v;
        m->error_code = 0;
        if (cmi_expr_eval(e, m, &v) != 0)
            problem = m->error_detail;
        else
            got = cmi_value_to_text(m->arena, &v, NULL);
    }
    int ok;
    if (c->want != NULL)
        ok = got != NULL && strcmp(got, c->want) == 0;
    else
        ok = problem != NULL && strstr(problem, c->error) != NULL;
    if (!ok) {
        (*failures)++;
        fprintf(stderr, "\n  %s\n    expected %s '%s'\n    got %s '%s'\n", c->expr, c->want ? "value" : "error",
                c->want ? c->want : c->error, got ? "value" : "error", got ? got : problem ? problem : "(none)");
    }
}

static void test_cases(void)
{
    int failures = 0, count = 0;
    for (const ecase_t *c = cases; c->expr != NULL; c++, count++)
        run_case(c, &failures);
    fprintf(stderr, "\n  %d expression cases, %d failed\n", count, failures);
    CU_ASSERT_EQUAL(failures, 0);
    CU_ASSERT(count >= 150);
}

static void test_error_codes(void)
{
    cmi_expr_error_t err;
    cmi_expr_t *e = cmi_expr_compile(cfg, "${1 / 0}", NULL, &err);
    cmi_value_t v;
    CU_ASSERT_EQUAL(cmi_expr_eval(e, msg, &v), CMI_FLOW_ERROR);
    CU_ASSERT_EQUAL(msg->error_code, CMI_ERR_EXPRESSION);
    CU_ASSERT_STRING_EQUAL(msg->error_detail, "${1 / 0}: division by zero");
    /* an unparsable JSON payload is a payload error (400), not an expression error */
    cmi_msg_t *bad = cmi_msg_create(NULL, NULL, NULL, NULL);
    cmi_msg_set_payload(bad, "{\"a\": ", 6, "application/json");
    e = cmi_expr_compile(cfg, "${payload.a}", NULL, &err);
    CU_ASSERT_EQUAL(cmi_expr_eval(e, bad, &v), CMI_FLOW_ERROR);
    CU_ASSERT_EQUAL(bad->error_code, CMI_ERR_PAYLOAD);
    CU_ASSERT_PTR_NOT_NULL(strstr(bad->error_detail, "not valid JSON"));
    /* an empty body declared JSON simply has no value */
    cmi_msg_set_payload(bad, "", 0, "application/json");
    CU_ASSERT_EQUAL(cmi_expr_eval(e, bad, &v), 0);
    CU_ASSERT_EQUAL(v.type, CMI_VAL_NULL);
    cmi_msg_release(bad);
}

/* The XML document XPath reads of a JSON payload is bounded by the view
 * limit; past it every XPath on the message fails at once (413), without
 * building the tree again, until the payload changes. */
static void test_xpath_view_limit(void)
{
    cmi_expr_error_t err;
    cmi_expr_t *e = cmi_expr_compile(cfg, "count(//*)", NULL, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    cmi_msg_t *m = cmi_msg_create(NULL, NULL, NULL, NULL);
    const char *body = "{\"kkkkkkkkkkkkkkkkkkkk\": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}";
    cmi_msg_set_payload(m, body, strlen(body), "application/json");
    cmi_msg_set_view_limit(300);
    cmi_value_t v;
    CU_ASSERT_EQUAL(cmi_expr_eval(e, m, &v), CMI_FLOW_ERROR);
    CU_ASSERT_EQUAL(m->error_code, CMI_ERR_PAYLOAD_TOO_LARGE);
    CU_ASSERT_TRUE(m->payload.xpath_too_large);
    CU_ASSERT_PTR_NULL(m->payload.xpath_doc);
    CU_ASSERT_EQUAL(cmi_expr_eval(e, m, &v), CMI_FLOW_ERROR);
    cmi_msg_set_view_limit(CMI_MSG_DEFAULT_VIEW_LIMIT);
    cmi_msg_set_payload(m, "{\"a\": 1}", 8, "application/json");
    CU_ASSERT_EQUAL(cmi_expr_eval(e, m, &v), 0); /* a new payload gets its own view */
    CU_ASSERT_FALSE(m->payload.xpath_too_large);
    cmi_msg_release(m);
}

static void test_error_offsets(void)
{
    cmi_expr_error_t err;
    CU_ASSERT_PTR_NULL(cmi_expr_compile(cfg, "${payload.a + }", NULL, &err));
    CU_ASSERT_EQUAL(err.offset, 14); /* the '}' position: where a value was expected */
    CU_ASSERT_PTR_NULL(cmi_expr_compile(cfg, "  ${foo.bar}", NULL, &err));
    CU_ASSERT_EQUAL(err.offset, 4);
}

static void test_truth(void)
{
    cmi_value_t v = cmi_value_cstring("TRUE");
    CU_ASSERT_TRUE(cmi_value_truth(&v));
    v = cmi_value_cstring("yes");
    CU_ASSERT_FALSE(cmi_value_truth(&v));
    v = cmi_value_int(0);
    CU_ASSERT_FALSE(cmi_value_truth(&v));
    v = cmi_value_number(0.5);
    CU_ASSERT_TRUE(cmi_value_truth(&v));
    v = cmi_value_null();
    CU_ASSERT_FALSE(cmi_value_truth(&v));
    cmi_expr_error_t err;
    int b = -1;
    cmi_expr_t *e = cmi_expr_compile(cfg, "${payload.address}", NULL, &err);
    CU_ASSERT_EQUAL(cmi_expr_eval_bool(e, msg, &b), 0);
    CU_ASSERT_EQUAL(b, 1);
    e = cmi_expr_compile(cfg, "${payload.missing}", NULL, &err);
    CU_ASSERT_EQUAL(cmi_expr_eval_bool(e, msg, &b), 0);
    CU_ASSERT_EQUAL(b, 0);
}

/* ---- templates ------------------------------------------------------------ */

static const char *render(const char *text, cmi_template_mode_t mode, const cmi_value_t *args, size_t nargs)
{
    cmi_expr_error_t err;
    cmi_template_t *t = cmi_template_compile(cfg, text, mode, nargs, &err);
    if (t == NULL)
        return cmi_arena_sprintf(msg->arena, "compile error: %s @%zu", err.message, err.offset);
    cmi_strbuf_t b;
    cmi_strbuf_init(&b, msg->arena, 64);
    if (cmi_template_render(t, msg, args, nargs, &b) != 0)
        return cmi_arena_sprintf(msg->arena, "error: %s", msg->error_detail);
    return b.data;
}

static void test_templates(void)
{
    CU_ASSERT_STRING_EQUAL(render("Hello ${payload.name}!", CMI_TEMPLATE_TEXT, NULL, 0), "Hello John!");
    CU_ASSERT_STRING_EQUAL(render("[${payload.missing}]", CMI_TEMPLATE_TEXT, NULL, 0), "[]");
    CU_ASSERT_STRING_EQUAL(render("a ${1 + 2} b ${vars.label}", CMI_TEMPLATE_TEXT, NULL, 0), "a 3 b abc");
    CU_ASSERT_STRING_EQUAL(render("no placeholders $ { }", CMI_TEMPLATE_TEXT, NULL, 0), "no placeholders $ { }");
    CU_ASSERT_STRING_EQUAL(render("${payload[\"address\"][\"first name\"]} {x}", CMI_TEMPLATE_TEXT, NULL, 0), "x {x}");
    /* JSON: inside a string escaped, outside as JSON; bare strings raw as in MI */
    CU_ASSERT_STRING_EQUAL(render("{\"n\": \"${payload.name}\"}", CMI_TEMPLATE_JSON, NULL, 0), "{\"n\": \"John\"}");
    CU_ASSERT_STRING_EQUAL(render("{\"n\": ${payload.age}}", CMI_TEMPLATE_JSON, NULL, 0), "{\"n\": 30}");
    CU_ASSERT_STRING_EQUAL(render("{\"o\": ${vars.obj}}", CMI_TEMPLATE_JSON, NULL, 0), "{\"o\": {\"k\":\"v\",\"n\":[1,2]}}");
    CU_ASSERT_STRING_EQUAL(render("{\"q\": \"${vars.quoted}\"}", CMI_TEMPLATE_JSON, NULL, 0),
                           "{\"q\": \"say \\\"hi\\\"\\n\"}");
    CU_ASSERT_STRING_EQUAL(render("{\"esc\": \"a\\\"${vars.label}\"}", CMI_TEMPLATE_JSON, NULL, 0),
                           "{\"esc\": \"a\\\"abc\"}");
    CU_ASSERT_STRING_EQUAL(render("{\"m\": ${payload.missing}, \"b\": ${payload.active}}", CMI_TEMPLATE_JSON, NULL, 0),
                           "{\"m\": null, \"b\": true}");
    CU_ASSERT_STRING_EQUAL(render("{\"raw\": ${payload.name}}", CMI_TEMPLATE_JSON, NULL, 0), "{\"raw\": John}");
    /* legacy $N */
    cmi_value_t args[2] = {cmi_value_cstring("x\"y"), cmi_value_int(5)};
    CU_ASSERT_STRING_EQUAL(render("{\"a\": \"$1\", \"b\": $2}", CMI_TEMPLATE_JSON, args, 2), "{\"a\": \"x\\\"y\", \"b\": 5}");
    CU_ASSERT_STRING_EQUAL(render("<a>$1</a><b>$2</b>", CMI_TEMPLATE_XML, args, 2), "<a>x&quot;y</a><b>5</b>");
    CU_ASSERT_STRING_EQUAL(render("<a>${vars.lt}</a>", CMI_TEMPLATE_XML, NULL, 0), "<a>1&lt;2 &amp; 3</a>");
    CU_ASSERT_STRING_EQUAL(render("costs $5", CMI_TEMPLATE_TEXT, NULL, 0), "costs $5"); /* no args: not a placeholder */
    /* errors */
    CU_ASSERT_PTR_NOT_NULL(strstr(render("x ${payload.name", CMI_TEMPLATE_TEXT, NULL, 0), "without its closing"));
    CU_ASSERT_PTR_NOT_NULL(strstr(render("$3", CMI_TEMPLATE_JSON, args, 2), "$3 has no matching <arg>"));
    CU_ASSERT_PTR_NOT_NULL(strstr(render("${1 +}", CMI_TEMPLATE_TEXT, NULL, 0), "compile error: expected a value"));
    CU_ASSERT_PTR_NOT_NULL(strstr(render("v=${1 / 0}", CMI_TEMPLATE_TEXT, NULL, 0), "division by zero"));
}

/* MI holds a text payload as a <text> element: Synapse expressions read it
 * as {"text": ...} (MI's RabbitMQ inbound endpoint example logs exactly
 * that); a text that is not UTF-8 is a payload error, not a crash. */
static void test_text_payload(void)
{
    cmi_msg_t *m = cmi_msg_create(NULL, NULL, NULL, NULL);
    cmi_msg_set_payload(m, "Hello World!", 12, "text/plain");
    cmi_expr_error_t err;
    cmi_expr_t *whole = cmi_expr_compile(cfg, "${payload}", NULL, &err);
    cmi_expr_t *text = cmi_expr_compile(cfg, "${payload.text}", NULL, &err);
    cmi_value_t v;
    CU_ASSERT_EQUAL(cmi_expr_eval(whole, m, &v), 0);
    CU_ASSERT_STRING_EQUAL(cmi_value_to_text(m->arena, &v, NULL), "{\"text\":\"Hello World!\"}");
    CU_ASSERT_EQUAL(cmi_expr_eval(text, m, &v), 0);
    CU_ASSERT_STRING_EQUAL(cmi_value_to_text(m->arena, &v, NULL), "Hello World!");
    cmi_msg_set_payload(m, "caf\xe9", 4, "text/plain");
    CU_ASSERT_EQUAL(cmi_expr_eval(whole, m, &v), CMI_FLOW_ERROR);
    CU_ASSERT_EQUAL(m->error_code, CMI_ERR_PAYLOAD);
    cmi_msg_release(m);
}

static CU_TestInfo expr_tests[] = {
    {"a text payload reads as {\"text\": ...}", test_text_payload},
    {"the case table (roots, operators, functions, legacy, XPath)", test_cases},
    {"evaluation errors carry codes and the expression", test_error_codes},
    {"the XPath view of a JSON payload is bounded", test_xpath_view_limit},
    {"syntax errors point at their offset", test_error_offsets},
    {"truth rules", test_truth},
    {"templates: text, JSON-aware, XML, legacy $N", test_templates},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"expr", setup, teardown, NULL, NULL, expr_tests},
    CU_SUITE_INFO_NULL,
};

int main(void)
{
    return cu_run(suites);
}
