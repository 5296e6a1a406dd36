// The schemas of the grammar benches and an instance of each (bench_grammar.cc: the
// matcher alone; bench_grammar_server.cc: the server's per-request path). Data only.
#pragma once

namespace rwkvx::bench {

struct BenchCase {
  const char* name;
  const char* schema;  // nullptr: json_object
  const char* instance;
};

inline const BenchCase kBenchCases[] = {
    {"small_object",
     R"({"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer","minimum":0,"maximum":150},
        "email":{"type":"string"},"active":{"type":"boolean"}},"required":["name","age","email","active"]})",
     R"({"name":"Alice Johnson","age":34,"email":"alice.johnson@example.com","active":true})"},
    {"nested_arrays",
     R"({"type":"object","properties":{"id":{"type":"integer"},"title":{"type":"string","maxLength":40},
        "tags":{"type":"array","items":{"type":"string"},"maxItems":8},
        "points":{"type":"array","items":{"type":"array","items":{"type":"number"},"minItems":2,"maxItems":3}},
        "owner":{"type":"object","properties":{"name":{"type":"string"},"roles":{"type":"array",
          "items":{"enum":["admin","editor","viewer"]}}},"required":["name","roles"]}},
        "required":["id","title","tags","points","owner"]})",
     R"({"id":90210,"title":"Quarterly report: sales by region","tags":["finance","q3","internal","draft"],)"
     R"("points":[[1.5,2.25],[3,4,5],[-0.5,1e3]],"owner":{"name":"Bob","roles":["admin","viewer"]}})"},
    {"enum_heavy",
     R"({"type":"object","properties":{
        "country":{"enum":["Afghanistan","Albania","Algeria","Andorra","Angola","Argentina","Armenia","Australia",
          "Austria","Azerbaijan","Bahamas","Bahrain","Bangladesh","Barbados","Belarus","Belgium","Belize","Benin",
          "Bhutan","Bolivia","Brazil","Bulgaria","Canada","Chile","China","Colombia","Croatia","Cuba","Cyprus",
          "Denmark","Ecuador","Egypt","Estonia","Ethiopia","Finland","France","Germany","Ghana","Greece","Hungary",
          "Iceland","India","Indonesia","Iran","Iraq","Ireland","Israel","Italy","Jamaica","Japan","Kenya",
          "Latvia","Lithuania","Mexico","Morocco","Nepal","Netherlands","Norway","Peru","Poland","Portugal"]},
        "color":{"enum":["red","orange","yellow","green","blue","indigo","violet","black","white","gray"]},
        "size":{"enum":["XS","S","M","L","XL","XXL"]},
        "status":{"enum":["pending","active","suspended","closed","archived"]},
        "priority":{"enum":[1,2,3,4,5]},
        "currency":{"enum":["USD","EUR","GBP","JPY","CNY","INR","BRL"]}},
        "required":["country","color","size","status","priority","currency"]})",
     R"({"country":"Netherlands","color":"indigo","size":"XL","status":"suspended","priority":3,"currency":"EUR"})"},
    {"json_object", nullptr,
     R"({"query":"weather in Paris","results":[{"day":"Monday","high":21.5,"low":12,"rain":false},)"
     R"({"day":"Tuesday","high":19,"low":11.25,"rain":true,"notes":"showers after 3 pm"}],"units":"metric"})"},
};

}  // namespace rwkvx::bench
