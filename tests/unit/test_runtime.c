/* Unit tests: message context, payload views, the sequence runner with
 * suspend/resume and fault handling, driven without HTTP through a fake
 * origin that records what the flow answered. */
#include "config.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#include "config/config.h"
#include "cu_main.h"
#include "deploy.h"
#include "runtime/convert.h"
#include "runtime/errors.h"
#include "runtime/flow.h"
#include "runtime/msg.h"
#include "runtime/worker.h"

/* ---- a fake origin ---------------------------------------------------- */

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    cmi_msg_t *pending_resume; /* posted by another thread, run by the test's */
    int responds;
    int finishes;
    int status; /* HTTP_SC at respond time, 200 if unset */
    char body[512];
    char content_type[64];
    char error_code[16];
} outcome_t;

static outcome_t out;

static void reset_outcome(void)
{
    pthread_mutex_lock(&out.lock);
    out.responds = out.finishes = out.status = 0;
    out.body[0] = out.content_type[0] = out.error_code[0] = '\0';
    pthread_mutex_unlock(&out.lock);
}

static void fake_respond(cmi_msg_t *msg)
{
    size_t len;
    const char *body = cmi_msg_payload_bytes(msg, &len);
    const char *sc = cmi_msg_prop_text(msg, CMI_SCOPE_AXIS2, "HTTP_SC");
    const char *code = cmi_msg_prop_text(msg, CMI_SCOPE_DEFAULT, "ERROR_CODE");
    pthread_mutex_lock(&out.lock);
    out.responds++;
    out.status = sc ? atoi(sc) : 200;
    snprintf(out.body, sizeof(out.body), "%.*s", (int)len, body);
    snprintf(out.content_type, sizeof(out.content_type), "%s",
             msg->payload.content_type ? msg->payload.content_type : "");
    snprintf(out.error_code, sizeof(out.error_code), "%s", code ? code : "");
    pthread_mutex_unlock(&out.lock);
}

static void fake_finish(cmi_msg_t *msg)
{
    (void)msg;
    pthread_mutex_lock(&out.lock);
    out.finishes++;
    pthread_cond_broadcast(&out.cond);
    pthread_mutex_unlock(&out.lock);
}

static const cmi_msg_origin_t fake_origin = {"test", fake_respond, fake_finish};

/* Stands in for a worker's queue: a resume posted from another thread is
 * handed to the test's thread, which continues the flow, so the message is
 * only ever touched by one thread at a time. */
static void post_resume_hook(cmi_msg_t *msg)
{
    pthread_mutex_lock(&out.lock);
    out.pending_resume = msg;
    pthread_cond_broadcast(&out.cond);
    pthread_mutex_unlock(&out.lock);
}

/* Waits (at most 5 s) for the flow to finish, running posted resumes. */
static int wait_finished(void)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 5;
    pthread_mutex_lock(&out.lock);
    while (out.finishes == 0) {
        if (out.pending_resume != NULL) {
            cmi_msg_t *msg = out.pending_resume;
            out.pending_resume = NULL;
            pthread_mutex_unlock(&out.lock);
            cmi_flow_resumed(msg);
            pthread_mutex_lock(&out.lock);
            continue;
        }
        if (pthread_cond_timedwait(&out.cond, &out.lock, &deadline) != 0)
            break;
    }
    int done = out.finishes;
    pthread_mutex_unlock(&out.lock);
    return done;
}

/* ---- deployment --------------------------------------------------------- */

static test_deploy_t dep;
static cmi_config_t *cfg;

#define API_HEAD "<api xmlns=\"http://ws.apache.org/ns/synapse\" name=\"T\" context=\"/t\">"

static int setup(void)
{
    pthread_mutex_init(&out.lock, NULL);
    pthread_cond_init(&out.cond, NULL);
    setenv("CMI_TEST_MEDIATORS", "1", 1);
    cmi_flow_set_resume_hook(post_resume_hook);
    deploy_init(&dep);
    deploy_file(&dep, "api/t.xml",
                API_HEAD
                "<resource methods=\"GET\" uri-template=\"/respond\"><inSequence>"
                "  <property name=\"HTTP_SC\" scope=\"axis2\" value=\"201\"/>"
                "  <payloadFactory media-type=\"json\"><format>{\"ok\": true}</format></payloadFactory>"
                "  <respond/>"
                "  <property name=\"never\" value=\"reached\"/>"
                "</inSequence></resource>"
                "<resource methods=\"GET\" uri-template=\"/noanswer\"><inSequence>"
                "  <property name=\"x\" value=\"1\"/>"
                "</inSequence></resource>"
                "<resource methods=\"GET\" uri-template=\"/suspend\"><inSequence>"
                "  <property name=\"before\" value=\"1\"/>"
                "  <testSuspend millis=\"50\" from=\"thread\"/>"
                "  <sequence key=\"after\"/>"
                "  <respond/>"
                "</inSequence></resource>"
                "<resource methods=\"GET\" uri-template=\"/fail\" faultSequence=\"ownFault\"><inSequence>"
                "  <testSuspend millis=\"10\" from=\"thread\" fail=\"true\"/>"
                "  <respond/>"
                "</inSequence></resource>"
                "<resource methods=\"GET\" uri-template=\"/failglobal\"><inSequence>"
                "  <testSuspend millis=\"10\" from=\"thread\" fail=\"true\"/>"
                "</inSequence></resource>"
                "<resource methods=\"GET\" uri-template=\"/failinfault\" faultSequence=\"failingFault\"><inSequence>"
                "  <testSuspend millis=\"10\" from=\"thread\" fail=\"true\"/>"
                "</inSequence></resource>"
                "<resource methods=\"GET\" uri-template=\"/onerror\"><inSequence>"
                "  <sequence key=\"guarded\"/>"
                "</inSequence></resource>"
                "<resource methods=\"GET\" uri-template=\"/drop\"><inSequence><drop/><respond/></inSequence></resource>"
                "</api>");
    deploy_file(&dep, "sequences/after.xml",
                "<sequence xmlns=\"http://ws.apache.org/ns/synapse\" name=\"after\">"
                "<payloadFactory media-type=\"text\"><format>resumed</format></payloadFactory></sequence>");
    deploy_file(&dep, "sequences/ownFault.xml",
                "<sequence xmlns=\"http://ws.apache.org/ns/synapse\" name=\"ownFault\">"
                "<payloadFactory media-type=\"json\"><format>{\"handled\": \"own\"}</format></payloadFactory>"
                "<property name=\"HTTP_SC\" scope=\"axis2\" value=\"503\"/><respond/></sequence>");
    deploy_file(&dep, "sequences/failingFault.xml",
                "<sequence xmlns=\"http://ws.apache.org/ns/synapse\" name=\"failingFault\">"
                "<testSuspend millis=\"10\" from=\"thread\" fail=\"true\"/><respond/></sequence>");
    deploy_file(&dep, "sequences/guarded.xml",
                "<sequence xmlns=\"http://ws.apache.org/ns/synapse\" name=\"guarded\" onError=\"handler\">"
                "<testSuspend millis=\"10\" from=\"thread\" fail=\"true\"/></sequence>");
    deploy_file(&dep, "sequences/handler.xml",
                "<sequence xmlns=\"http://ws.apache.org/ns/synapse\" name=\"handler\">"
                "<payloadFactory media-type=\"text\"><format>onError ran</format></payloadFactory><respond/>"
                "</sequence>");
    cmi_diag_t diag;
    cfg = deploy_load(&dep, &diag);
    return cfg == NULL;
}

static int teardown(void)
{
    cmi_config_destroy(cfg);
    deploy_remove(&dep);
    return 0;
}

static const cmi_resource_t *res_of(const char *pattern)
{
    const cmi_api_t *api = cfg->apis[0];
    for (size_t i = 0; i < api->count; i++)
        if (strcmp(api->resources[i]->pattern, pattern) == 0)
            return api->resources[i];
    return NULL;
}

/* Runs the resource's flow to completion on a fresh message. */
static void run(const char *pattern)
{
    reset_outcome();
    const cmi_resource_t *res = res_of(pattern);
    CU_ASSERT_PTR_NOT_NULL_FATAL(res);
    cmi_msg_t *msg = cmi_msg_create(NULL, NULL, &fake_origin, NULL);
    msg->api = res->api;
    msg->resource = res;
    msg->fault_seq = res->fault_seq ? res->fault_seq : cfg->fault_seq;
    cmi_flow_start(msg, res->in_seq);
    CU_ASSERT_FATAL(wait_finished() == 1);
}

static void test_respond_stops_flow(void)
{
    run("/respond");
    CU_ASSERT_EQUAL(out.responds, 1);
    CU_ASSERT_EQUAL(out.status, 201);
    CU_ASSERT_STRING_EQUAL(out.body, "{\"ok\": true}");
    CU_ASSERT_STRING_EQUAL(out.content_type, "application/json");
}

static void test_flow_end_without_answer(void)
{
    run("/noanswer");
    CU_ASSERT_EQUAL(out.responds, 0);
    CU_ASSERT_EQUAL(out.finishes, 1);
}

static void test_suspend_resume_from_thread(void)
{
    run("/suspend");
    CU_ASSERT_EQUAL(out.responds, 1);
    CU_ASSERT_STRING_EQUAL(out.body, "resumed");
}

static void test_fault_sequence_of_resource(void)
{
    run("/fail");
    CU_ASSERT_EQUAL(out.responds, 1);
    CU_ASSERT_EQUAL(out.status, 503);
    CU_ASSERT_STRING_EQUAL(out.body, "{\"handled\": \"own\"}");
    CU_ASSERT_STRING_EQUAL(out.error_code, "300001");
}

static void test_no_fault_sequence_json_error(void)
{
    run("/failglobal");
    CU_ASSERT_EQUAL(out.responds, 1);
    CU_ASSERT_EQUAL(out.status, 500);
    CU_ASSERT_PTR_NOT_NULL(strstr(out.body, "\"code\":300001"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out.body, "TEST_FAILURE"));
}

static void test_error_in_fault_does_not_loop(void)
{
    run("/failinfault");
    CU_ASSERT_EQUAL(out.responds, 1);
    CU_ASSERT_EQUAL(out.status, 500);
    CU_ASSERT_PTR_NOT_NULL(strstr(out.body, "\"error\""));
}

static void test_on_error_of_sequence(void)
{
    run("/onerror");
    CU_ASSERT_EQUAL(out.responds, 1);
    CU_ASSERT_STRING_EQUAL(out.body, "onError ran");
}

static void test_drop(void)
{
    run("/drop");
    CU_ASSERT_EQUAL(out.responds, 0);
}

static void test_depth_limit(void)
{
    cmi_msg_t *msg = cmi_msg_create(NULL, NULL, &fake_origin, NULL);
    static const cmi_sequence_t empty = {.name = "e"};
    int rc = CMI_FLOW_CONTINUE;
    int pushed = 0;
    while (rc == CMI_FLOW_CONTINUE && pushed < 1000) {
        rc = cmi_flow_push(msg, &empty);
        pushed += rc == CMI_FLOW_CONTINUE;
    }
    CU_ASSERT_EQUAL(pushed, CMI_FLOW_MAX_DEPTH);
    CU_ASSERT_EQUAL(rc, CMI_FLOW_ERROR);
    CU_ASSERT_EQUAL(msg->error_code, CMI_ERR_SEQUENCE_DEPTH);
    cmi_msg_release(msg);
}

/* ---- message context ---------------------------------------------------- */

static void test_properties_and_headers(void)
{
    cmi_msg_t *msg = cmi_msg_create(NULL, NULL, &fake_origin, NULL);
    CU_ASSERT_EQUAL(strncmp(msg->id, "urn:uuid:", 9), 0);
    CU_ASSERT_EQUAL(strlen(msg->id), 45);
    cmi_msg_prop_set(msg, CMI_SCOPE_DEFAULT, "a", cmi_value_cstring("1"));
    cmi_msg_prop_set(msg, CMI_SCOPE_AXIS2, "a", cmi_value_int(2));
    CU_ASSERT_STRING_EQUAL(cmi_msg_prop_text(msg, CMI_SCOPE_DEFAULT, "a"), "1");
    CU_ASSERT_STRING_EQUAL(cmi_msg_prop_text(msg, CMI_SCOPE_AXIS2, "a"), "2");
    cmi_msg_prop_set(msg, CMI_SCOPE_DEFAULT, "a", cmi_value_bool(1));
    CU_ASSERT_STRING_EQUAL(cmi_msg_prop_text(msg, CMI_SCOPE_DEFAULT, "a"), "true");
    cmi_msg_prop_remove(msg, CMI_SCOPE_DEFAULT, "a");
    CU_ASSERT_PTR_NULL(cmi_msg_prop_get(msg, CMI_SCOPE_DEFAULT, "a"));
    /* operation scope shares the default scope */
    cmi_msg_prop_set(msg, CMI_SCOPE_OPERATION, "op", cmi_value_cstring("x"));
    CU_ASSERT_STRING_EQUAL(cmi_msg_prop_text(msg, CMI_SCOPE_DEFAULT, "op"), "x");

    cmi_msg_header_add_inbound(msg, "Content-Type", 12, "text/plain", 10);
    cmi_msg_header_add_inbound(msg, "X-Req", 5, "r", 1);
    CU_ASSERT_STRING_EQUAL(cmi_msg_prop_text(msg, CMI_SCOPE_TRANSPORT, "content-type"), "text/plain");
    cmi_msg_prop_set(msg, CMI_SCOPE_TRANSPORT, "X-Out", cmi_value_int(7));
    size_t len;
    CU_ASSERT_STRING_EQUAL(cmi_msg_header_get(msg, "x-out", &len), "7");
    int outbound = 0, inbound = 0;
    for (size_t i = 0; i < msg->headers.count; i++)
        msg->headers.items[i].outbound ? outbound++ : inbound++;
    CU_ASSERT_EQUAL(outbound, 1);
    CU_ASSERT_EQUAL(inbound, 2);
    cmi_msg_prop_remove(msg, CMI_SCOPE_TRANSPORT, "X-REQ");
    CU_ASSERT_PTR_NULL(cmi_msg_header_get(msg, "X-Req", NULL));

    /* uri.var.* and query.param.* read the dispatch parameters */
    cmi_kvlist_add(msg->arena, &msg->path_params, "id", cmi_value_cstring("42"));
    cmi_kvlist_add(msg->arena, &msg->query_params, "q", cmi_value_cstring("cats"));
    CU_ASSERT_STRING_EQUAL(cmi_msg_prop_text(msg, CMI_SCOPE_DEFAULT, "uri.var.id"), "42");
    CU_ASSERT_STRING_EQUAL(cmi_msg_prop_text(msg, CMI_SCOPE_DEFAULT, "query.param.q"), "cats");

    cmi_msg_var_set(msg, "v", cmi_value_number(1.5));
    CU_ASSERT_EQUAL(cmi_msg_var_get(msg, "v")->u.d, 1.5);
    cmi_msg_var_remove(msg, "v");
    CU_ASSERT_PTR_NULL(cmi_msg_var_get(msg, "v"));
    cmi_msg_release(msg);
}

static void test_payload_views(void)
{
    cmi_msg_t *msg = cmi_msg_create(NULL, NULL, &fake_origin, NULL);
    const char *body = "{\"a\": {\"b\": [1, 2]}}";
    cmi_msg_set_payload(msg, body, strlen(body), "application/json; charset=UTF-8");
    CU_ASSERT_EQUAL(msg->payload.kind, CMI_PAYLOAD_JSON);
    const char *err = NULL;
    json_t *j = cmi_msg_payload_json(msg, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_PTR_EQUAL(cmi_msg_payload_json(msg, NULL), j); /* parsed once */
    CU_ASSERT_EQUAL(json_integer_value(json_array_get(json_object_get(json_object_get(j, "a"), "b"), 1)), 2);

    cmi_msg_set_payload_json(msg, json_pack("{s:i}", "n", 5));
    size_t len;
    CU_ASSERT_STRING_EQUAL(cmi_msg_payload_bytes(msg, &len), "{\"n\":5}");

    const char *bad = "{\"a\": ";
    cmi_msg_set_payload(msg, bad, strlen(bad), "application/json");
    CU_ASSERT_PTR_NULL(cmi_msg_payload_json(msg, &err));
    CU_ASSERT_PTR_NOT_NULL(err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "not valid JSON"));

    const char *xml = "<a xmlns=\"urn:x\"><b>1</b></a>";
    cmi_msg_set_payload(msg, xml, strlen(xml), "text/xml");
    CU_ASSERT_EQUAL(msg->payload.kind, CMI_PAYLOAD_XML);
    xmlDocPtr doc = cmi_msg_payload_xml(msg, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    CU_ASSERT_STRING_EQUAL((const char *)xmlDocGetRootElement(doc)->name, "a");
    const char *notxml = "<a><b></a>";
    cmi_msg_set_payload(msg, notxml, strlen(notxml), "application/xml");
    CU_ASSERT_PTR_NULL(cmi_msg_payload_xml(msg, &err));
    /* a payload with a DOCTYPE is refused: no entity is declared, read or
     * expanded */
    const char *xxe = "<!DOCTYPE a [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><a>&e;</a>";
    cmi_msg_set_payload(msg, xxe, strlen(xxe), "application/xml");
    CU_ASSERT_PTR_NULL(cmi_msg_payload_xml(msg, &err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "a DOCTYPE is not allowed"));
    CU_ASSERT_EQUAL(cmi_payload_kind_of("application/vnd.api+json"), CMI_PAYLOAD_JSON);
    CU_ASSERT_EQUAL(cmi_payload_kind_of("application/soap+xml; charset=utf-8"), CMI_PAYLOAD_XML);
    CU_ASSERT_EQUAL(cmi_payload_kind_of("text/plain"), CMI_PAYLOAD_TEXT);
    CU_ASSERT_EQUAL(cmi_payload_kind_of("application/octet-stream"), CMI_PAYLOAD_BINARY);
    cmi_msg_release(msg);
}

/* XML to JSON: one key per name in order of first appearance, arrays for
 * repeated names and <?xml-multiple?> ones; a result past the limit is
 * refused. */
static void test_xml_to_json(void)
{
    cmi_arena_t *a = cmi_arena_create(0);
    const char *why;
    const char *text = "<r><b>1</b><a x=\"y\">2</a><?xml-multiple c?><b>3</b><c>t</c><d/>tail</r>";
    xmlDocPtr doc = cmi_xml_read(a, text, strlen(text), &why);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    cmi_strbuf_t b;
    cmi_strbuf_init(&b, a, 64);
    CU_ASSERT_EQUAL(cmi_xml_to_json(xmlDocGetRootElement(doc), &b, 1024), 0);
    CU_ASSERT_STRING_EQUAL(b.data, "{\"r\":{\"b\":[1,3],\"a\":{\"@x\":\"y\",\"$\":2},\"c\":[\"t\"],\"d\":null,\"$\":\"tail\"}}");
    cmi_strbuf_init(&b, a, 64);
    CU_ASSERT_EQUAL(cmi_xml_to_json(xmlDocGetRootElement(doc), &b, 20), -1);
    xmlFreeDoc(doc);
    CU_ASSERT_PTR_NULL(cmi_xml_read(a, "<!DOCTYPE r><r/>", 16, &why));
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "DOCTYPE"));
    CU_ASSERT_PTR_NULL(cmi_xml_read(a, "<r>", 3, &why));
    CU_ASSERT_PTR_NOT_NULL(why);
    cmi_arena_destroy(a);
}

/* An element of n attributes costs libxml2 n^2: more than 1,000 are
 * refused before it reads them, counted as libxml2 reads a tag. */
static char *with_attributes(cmi_arena_t *a, const char *before, int n, const char *after)
{
    cmi_strbuf_t b;
    cmi_strbuf_init(&b, a, 16 * (size_t)n);
    cmi_strbuf_printf(&b, "<r>%s<e v=\">\"", before);
    for (int i = 1; i < n; i++)
        cmi_strbuf_printf(&b, i % 2 ? " a%d='1'" : " a%d = \"1\"", i);
    cmi_strbuf_printf(&b, "/>%s</r>", after);
    return b.data;
}

static void test_xml_attribute_limit(void)
{
    cmi_arena_t *a = cmi_arena_create(0);
    const char *why;
    /* a '>' in a value does not end the tag; comments, CDATA and PIs hold
     * no tag; equals signs in text are not attributes */
    const char *cover = "<!-- it's <x a='1'> --><![CDATA[ <y b=\"2\"> ]]><?pi c='3'?>x=1 y=2";
    char *ok = with_attributes(a, cover, CMI_XML_MAX_ATTRIBUTES, "");
    xmlDocPtr doc = cmi_xml_read(a, ok, strlen(ok), &why);
    CU_ASSERT_PTR_NOT_NULL(doc);
    xmlFreeDoc(doc);
    char *over = with_attributes(a, cover, CMI_XML_MAX_ATTRIBUTES + 1, "");
    CU_ASSERT_PTR_NULL(cmi_xml_read(a, over, strlen(over), &why));
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "more than 1000 attributes"));
    /* behind a broken processing instruction or a control byte in a
     * comment, libxml2 would read on to the tag: it stops at the first
     * fatal error instead */
    char *hidden = with_attributes(a, "<? ", CMI_XML_MAX_ATTRIBUTES + 1, " ?>");
    CU_ASSERT_PTR_NULL(cmi_xml_read(a, hidden, strlen(hidden), &why));
    CU_ASSERT_PTR_NULL(strstr(why, "attributes"));
    hidden = with_attributes(a, "<!-- \x01 ", CMI_XML_MAX_ATTRIBUTES + 1, " -->");
    CU_ASSERT_PTR_NULL(cmi_xml_read(a, hidden, strlen(hidden), &why));
    /* encodings the count cannot read are refused; Latin-1 and UTF-8 read */
    static const char utf16[] = "\xff\xfe<\0r\0/\0>\0";
    CU_ASSERT_PTR_NULL(cmi_xml_read(a, utf16, sizeof(utf16) - 1, &why));
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "ASCII-compatible"));
    const char *utf7 = "<?xml version=\"1.0\" encoding=\"UTF-7\"?><r/>";
    CU_ASSERT_PTR_NULL(cmi_xml_read(a, utf7, strlen(utf7), &why));
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "'UTF-7' is not supported"));
    const char *latin1 = "<?xml version='1.0' encoding='iso-8859-1'?><r a=\"\xe9\"/>";
    xmlDocPtr d = cmi_xml_read(a, latin1, strlen(latin1), &why);
    CU_ASSERT_PTR_NOT_NULL(d);
    xmlFreeDoc(d);
    cmi_arena_destroy(a);
}

/* JSON to XML is charged what it writes: a long key repeated per array
 * element stops at the limit. */
static void test_json_to_xml_limit(void)
{
    json_t *j = json_pack("{s:[i,i,i]}", "key", 1, 2, 3);
    xmlDocPtr doc = xmlNewDoc((const xmlChar *)"1.0");
    xmlNodePtr holder = xmlNewDocNode(doc, NULL, (const xmlChar *)"h", NULL);
    xmlDocSetRootElement(doc, holder);
    /* <jsonObject></jsonObject> 25 + 3 x (<key></key> 11 + 1) = 61 */
    CU_ASSERT_EQUAL(cmi_json_to_xml_document(holder, j, 61), 0);
    xmlFreeDoc(doc);
    doc = xmlNewDoc((const xmlChar *)"1.0");
    holder = xmlNewDocNode(doc, NULL, (const xmlChar *)"h", NULL);
    xmlDocSetRootElement(doc, holder);
    CU_ASSERT_EQUAL(cmi_json_to_xml_document(holder, j, 60), -1);
    xmlFreeDoc(doc);
    json_decref(j);
}

/* Integers beyond 64 bits are read as doubles, inside strings nothing
 * changes, and a document without one is parsed once. */
static void test_json_big_integers(void)
{
    cmi_arena_t *a = cmi_arena_create(0);
    json_error_t je;
    const char *text = "{\"big\": -123456789012345678901, \"s\": \"99999999999999999999\", \"n\": [9223372036854775807, "
                       "9223372036854775808, 1e5]}";
    json_t *j = cmi_json_read(a, text, strlen(text), &je);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_TRUE(json_is_real(json_object_get(j, "big")));
    CU_ASSERT_DOUBLE_EQUAL(json_real_value(json_object_get(j, "big")), -1.2345678901234568e20, 1e6);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "s")), "99999999999999999999");
    json_t *n = json_object_get(j, "n");
    CU_ASSERT_TRUE(json_is_integer(json_array_get(n, 0)));
    CU_ASSERT_TRUE(json_is_real(json_array_get(n, 1)));
    json_decref(j);
    CU_ASSERT_PTR_NULL(cmi_json_read(a, "[1e999]", 7, &je)); /* a real out of range stays an error */
    CU_ASSERT_PTR_NULL(cmi_json_read(a, "{\"a\": ", 6, &je));
    cmi_arena_destroy(a);
}

static void test_error_table(void)
{
    CU_ASSERT_EQUAL(cmi_error_status(CMI_ERR_PAYLOAD), 400);
    CU_ASSERT_EQUAL(cmi_error_status(CMI_ERR_PAYLOAD_TOO_LARGE), 413);
    CU_ASSERT_EQUAL(cmi_error_status(123456), 500);
    CU_ASSERT_EQUAL(cmi_error_register(701201, 503, "RABBITMQ:CONNECTION_ERROR"), 0);
    CU_ASSERT_EQUAL(cmi_error_status(701201), 503);
    CU_ASSERT_EQUAL(cmi_error_register(701201, 500, "X"), -1);
    CU_ASSERT_STRING_EQUAL(cmi_error_name(701201), "RABBITMQ:CONNECTION_ERROR");
}

/* urn:uuid:xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx, lower-case hex. */
static void test_message_id_format(void)
{
    for (int n = 0; n < 200; n++) {
        cmi_msg_t *msg = cmi_msg_create(NULL, NULL, &fake_origin, NULL);
        const char *id = msg->id;
        CU_ASSERT_EQUAL_FATAL(strlen(id), 45);
        CU_ASSERT_NSTRING_EQUAL(id, "urn:uuid:", 9);
        for (int i = 9; i < 45; i++) {
            if (i == 17 || i == 22 || i == 27 || i == 32) {
                CU_ASSERT_EQUAL(id[i], '-');
            } else {
                CU_ASSERT_PTR_NOT_NULL(strchr("0123456789abcdef", id[i]));
            }
        }
        CU_ASSERT_EQUAL(id[23], '4');
        CU_ASSERT_PTR_NOT_NULL(strchr("89ab", id[28]));
        cmi_msg_release(msg);
    }
}

static void noop(void *arg)
{
    (void)arg;
}

/* One entry per (fn, arg) however often it is deferred; a full table says
 * so (the caller then does the work at once). */
static void test_defer_table(void)
{
    static cmi_worker_t w; /* the table only: no thread, no loop */
    int args[CMI_WORKER_MAX_DEFERRED + 1];
    CU_ASSERT_EQUAL(cmi_worker_defer(&w, noop, &args[0]), 0);
    CU_ASSERT_EQUAL(cmi_worker_defer(&w, noop, &args[0]), 0);
    CU_ASSERT_EQUAL(w.ndeferred, 1);
    for (int i = 1; i < CMI_WORKER_MAX_DEFERRED; i++)
        CU_ASSERT_EQUAL(cmi_worker_defer(&w, noop, &args[i]), 0);
    CU_ASSERT_EQUAL(w.ndeferred, CMI_WORKER_MAX_DEFERRED);
    CU_ASSERT_EQUAL(cmi_worker_defer(&w, noop, &args[CMI_WORKER_MAX_DEFERRED]), -1);
    CU_ASSERT_EQUAL(cmi_worker_defer(&w, noop, &args[3]), 0); /* already there */
}

static CU_TestInfo flow_tests[] = {
    {"respond answers and stops the flow", test_respond_stops_flow},
    {"a flow may end without answering", test_flow_end_without_answer},
    {"suspend, resume from another thread, continue", test_suspend_resume_from_thread},
    {"error runs the resource's faultSequence", test_fault_sequence_of_resource},
    {"no fault sequence: JSON error by code", test_no_fault_sequence_json_error},
    {"an error inside a fault sequence does not loop", test_error_in_fault_does_not_loop},
    {"a sequence's onError handles its errors", test_on_error_of_sequence},
    {"drop ends the flow without answering", test_drop},
    {"nesting is bounded", test_depth_limit},
    CU_TEST_INFO_NULL,
};

static CU_TestInfo msg_tests[] = {
    {"properties in scopes, headers, variables", test_properties_and_headers},
    {"payload bytes and lazy JSON/XML views", test_payload_views},
    {"XML to JSON: grouping, arrays, the limit, DOCTYPE refused", test_xml_to_json},
    {"JSON to XML: charged against the limit", test_json_to_xml_limit},
    {"XML: at most 1,000 attributes an element", test_xml_attribute_limit},
    {"JSON integers beyond 64 bits", test_json_big_integers},
    {"error code to status table", test_error_table},
    {"message ids are RFC 4122 version 4 URNs", test_message_id_format},
    {"deferred work: one entry per pair, bounded table", test_defer_table},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"flow", setup, teardown, NULL, NULL, flow_tests},
    {"msg", NULL, NULL, NULL, NULL, msg_tests},
    CU_SUITE_INFO_NULL,
};

int main(void)
{
    return cu_run(suites);
}
