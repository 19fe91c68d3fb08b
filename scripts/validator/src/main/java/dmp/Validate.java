package dmp;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;
import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.parser.IParser;
import ca.uhn.fhir.parser.LenientErrorHandler;
import ca.uhn.fhir.validation.FhirValidator;
import ca.uhn.fhir.validation.ResultSeverityEnum;
import ca.uhn.fhir.validation.SingleValidationMessage;
import ca.uhn.fhir.util.VersionUtil;
import ca.uhn.fhir.validation.ValidationOptions;
import ca.uhn.fhir.validation.ValidationResult;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.PrePopulatedValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.SnapshotGeneratingValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.UnknownCodeSystemWarningValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;
import org.hl7.fhir.instance.model.api.IBaseResource;
import org.hl7.fhir.r4.model.Bundle;
import org.hl7.fhir.r4.model.StructureDefinition;
import org.hl7.fhir.utilities.http.ManagedWebAccess;
import org.hl7.fhir.utilities.json.model.JsonObject;
import org.hl7.fhir.utilities.settings.FhirSettings;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Map;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.stream.Stream;

/**
 * Offline FHIR R4 validation with HAPI FHIR's instance validator (the HL7 validator core).
 *
 * <pre>
 * java -cp CLASSPATH dmp.Validate [--ig DIR_OR_FILE]... [--profile URL]... [--out FILE] [--no-fail] FILE_OR_DIR...
 * </pre>
 *
 * <p>Every {@code --ig} directory is searched recursively for JSON StructureDefinition, ValueSet and
 * CodeSystem resources (a Bundle of them is unpacked too); files that are not FHIR conformance
 * resources are skipped. Every other argument is a JSON file to validate, or a directory whose
 * {@code *.json} files (recursively, sorted) are validated. The validator is initialised once and
 * then reused for all the files. Each resource is validated against the base R4 definition of its
 * type and the profiles in its {@code meta.profile}; {@code --profile URL} (a StructureDefinition
 * loaded from an {@code --ig}) adds that profile for every file whose resourceType is the profile's
 * type.
 *
 * <p>Output: one JSON report on stdout (or {@code --out FILE}):
 * {@code {"validator": ..., "loaded": {...}, "files": [{"file", "resourceType", "errors", "warnings",
 * "issues": [{"severity", "location", "line", "column", "messageId", "message"}]}]}}.
 *
 * <p>Exit code: 0 when no file has an error or fatal issue, 1 when one does (0 with {@code --no-fail}),
 * 2 when the harness itself failed (bad arguments, unreadable file).
 *
 * <p>Nothing is fetched from the network: no remote terminology server is configured, and every
 * definition comes from the R4 core package on the classpath or from the {@code --ig} directories.
 */
public final class Validate {

    private static final Set<String> CONFORMANCE_TYPES = Set.of("StructureDefinition", "ValueSet", "CodeSystem");

    private Validate() {}

    public static void main(String[] args) {
        int rc;
        try {
            rc = run(args);
        } catch (UsageException e) {
            System.err.println("dmp.Validate: " + e.getMessage());
            rc = 2;
        } catch (Exception e) {
            e.printStackTrace();
            rc = 2;
        }
        System.exit(rc);
    }

    private static final class UsageException extends Exception {
        UsageException(String message) {
            super(message);
        }
    }

    private static int run(String[] args) throws Exception {
        List<Path> igs = new ArrayList<>();
        List<String> profiles = new ArrayList<>();
        List<Path> inputs = new ArrayList<>();
        Path out = null;
        boolean fail = true;
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            switch (a) {
                case "--ig" -> igs.add(Paths.get(next(args, ++i, a)));
                case "--out" -> out = Paths.get(next(args, ++i, a));
                case "--profile" -> profiles.add(next(args, ++i, a));
                case "--no-fail" -> fail = false;
                case "-h", "--help" -> {
                    System.out.println("usage: dmp.Validate [--ig DIR]... [--profile URL]... [--out FILE] [--no-fail] FILE_OR_DIR...");
                    return 0;
                }
                default -> {
                    if (a.startsWith("--")) throw new UsageException("unknown option " + a);
                    inputs.add(Paths.get(a));
                }
            }
        }
        if (inputs.isEmpty()) throw new UsageException("nothing to validate");
        List<Path> files = new ArrayList<>();
        for (Path p : inputs) {
            if (Files.isDirectory(p)) files.addAll(jsonFiles(p));
            else if (Files.isRegularFile(p)) files.add(p);
            else throw new UsageException("no such file or directory: " + p);
        }

        long t0 = System.nanoTime();
        // Belt and braces for "nothing is fetched at run time": the HL7 core library's own web access
        // (package servers, terminology servers) is switched off, whatever else is configured.
        ManagedWebAccess.setAccessPolicy(ManagedWebAccess.WebAccessPolicy.PROHIBITED);
        FhirSettings.setProhibitNetworkAccess(true);
        FhirContext ctx = FhirContext.forR4();
        PrePopulatedValidationSupport project = new PrePopulatedValidationSupport(ctx);
        int[] loaded = new int[3];
        List<String> skipped = new ArrayList<>();
        Map<String, String> profileTypes = new HashMap<>(); // StructureDefinition url -> type
        IParser loader = ctx.newJsonParser().setParserErrorHandler(new LenientErrorHandler(false));
        for (Path ig : igs) {
            if (!Files.exists(ig)) throw new UsageException("no such IG directory: " + ig);
            for (Path f : Files.isDirectory(ig) ? jsonFiles(ig) : List.of(ig)) {
                String text = Files.readString(f, StandardCharsets.UTF_8);
                String topType = resourceTypeOf(text);
                if (topType == null || !(CONFORMANCE_TYPES.contains(topType) || topType.equals("Bundle"))) {
                    skipped.add(f.toString()); // JSON schemas, project config files, ConceptMaps...
                    continue;
                }
                IBaseResource res;
                try {
                    res = loader.parseResource(text);
                } catch (Exception e) { // not FHIR (JSON schemas, project config files): not a definition
                    skipped.add(f.toString());
                    continue;
                }
                List<IBaseResource> candidates = new ArrayList<>();
                if (res instanceof Bundle b) {
                    b.getEntry().forEach(e -> { if (e.getResource() != null) candidates.add(e.getResource()); });
                } else {
                    candidates.add(res);
                }
                boolean used = false;
                for (IBaseResource r : candidates) {
                    String type = ctx.getResourceType(r);
                    if (!CONFORMANCE_TYPES.contains(type)) continue;
                    switch (type) {
                        case "StructureDefinition" -> {
                            project.addStructureDefinition(r);
                            StructureDefinition sd = (StructureDefinition) r;
                            profileTypes.put(sd.getUrl(), sd.getType());
                            loaded[0]++;
                        }
                        case "ValueSet" -> { project.addValueSet(r); loaded[1]++; }
                        default -> { project.addCodeSystem(r); loaded[2]++; }
                    }
                    used = true;
                }
                if (!used) skipped.add(f.toString());
            }
        }

        // Terminology we cannot know offline (LOINC, SNOMED CT, the French NOS code systems
        // https://mos.esante.gouv.fr/NOS/..., urn:oid:... identifiers used as code systems) must not
        // turn into errors merely because no definition is available: HAPI's documented offline
        // set-up is to end the chain with UnknownCodeSystemWarningValidationSupport, which reports
        // "unknown code system" as a WARNING. Codes of code systems that ARE available (FHIR core,
        // the project's ValueSets/CodeSystems) are still checked, so a code outside a *required*
        // binding we ship (e.g. Patient.gender "femme") stays an error.
        UnknownCodeSystemWarningValidationSupport unknownCodeSystems = new UnknownCodeSystemWarningValidationSupport(ctx);
        unknownCodeSystems.setNonExistentCodeSystemSeverity(IValidationSupport.IssueSeverity.WARNING);

        ValidationSupportChain chain = new ValidationSupportChain(
                new DefaultProfileValidationSupport(ctx),          // R4 core StructureDefinitions, ValueSets, CodeSystems
                project,                                           // profiles/: the project's own definitions
                new CommonCodeSystemsTerminologyService(ctx),      // UCUM, MIME types, languages, countries, currencies
                new InMemoryTerminologyServerValidationSupport(ctx), // expands/validates enumerated ValueSets locally
                new SnapshotGeneratingValidationSupport(ctx),      // snapshots for differential-only profiles
                unknownCodeSystems);                               // last: see above

        for (String url : profiles) {
            if (!profileTypes.containsKey(url)) throw new UsageException("--profile " + url + ": no such StructureDefinition in --ig");
        }

        FhirInstanceValidator instanceValidator = new FhirInstanceValidator(chain);
        // The project's StructureDefinitions are not all written yet: a profile named in meta.profile that
        // is not in --ig is reported (as a warning by the core validator) rather than failing the run.
        instanceValidator.setErrorForUnknownProfiles(false);
        // Best-practice recommendations (e.g. "dom-6: a resource should have narrative") are advice,
        // not conformance: they stay as warnings.
        instanceValidator.setBestPracticeWarningLevel(org.hl7.fhir.r5.utils.validation.constants.BestPracticeWarningLevel.Warning);
        // References ("Patient/123") keep HAPI's defaults: their format is checked; with no resource
        // fetcher configured, nothing is resolved over the network.

        FhirValidator validator = ctx.newValidator();
        validator.setValidateAgainstStandardSchema(false); // XML schema: irrelevant to JSON
        validator.setValidateAgainstStandardSchematron(false);
        validator.registerValidatorModule(instanceValidator);
        long tInit = System.nanoTime();

        StringBuilder json = new StringBuilder(4096);
        json.append("{\"validator\":").append(str("hapi-fhir-validation " + VersionUtil.getVersion()));
        json.append(",\"fhirVersion\":\"4.0.1\"");
        json.append(",\"loaded\":{\"StructureDefinition\":").append(loaded[0])
                .append(",\"ValueSet\":").append(loaded[1])
                .append(",\"CodeSystem\":").append(loaded[2])
                .append(",\"skipped\":").append(strList(skipped)).append('}');
        json.append(",\"files\":[");
        boolean anyError = false;
        int totalErrors = 0;
        for (int i = 0; i < files.size(); i++) {
            Path f = files.get(i);
            String text = Files.readString(f, StandardCharsets.UTF_8);
            // The raw text is validated (not a re-serialised parse), so unknown elements, wrong JSON
            // types and the like are seen exactly as a client would send or receive them.
            String type = resourceTypeOf(text);
            ValidationOptions options = new ValidationOptions();
            for (String url : profiles) {
                if (profileTypes.get(url).equals(type)) options.addProfile(url);
            }
            ValidationResult result = validator.validateWithResult(text, options);
            int errors = 0;
            int warnings = 0;
            StringBuilder issues = new StringBuilder();
            boolean first = true;
            for (SingleValidationMessage m : result.getMessages()) {
                ResultSeverityEnum sev = m.getSeverity();
                String message = m.getMessage();
                if (isOfflinePackageArtefact(m)) {
                    // Validating an R4 extension StructureDefinition whose context is an element, the core
                    // validator (6.7.x) loads the *published* hl7.fhir.r4.core npm package to check that path
                    // in each FHIR version; offline it cannot, and reports "Error generating Snapshot: Unable
                    // to resolve package id hl7.fhir.r4.core". That says nothing about our definition: kept as
                    // a warning so it stays visible. Every other check of the definition still runs.
                    sev = ResultSeverityEnum.WARNING;
                    message = "[offline, not checked] " + message;
                }
                if (sev == ResultSeverityEnum.ERROR || sev == ResultSeverityEnum.FATAL) errors++;
                else if (sev == ResultSeverityEnum.WARNING) warnings++;
                if (!first) issues.append(',');
                first = false;
                issues.append("{\"severity\":").append(str(sev == null ? "information" : sev.getCode()))
                        .append(",\"location\":").append(str(m.getLocationString()))
                        .append(",\"line\":").append(m.getLocationLine() == null ? "null" : m.getLocationLine().toString())
                        .append(",\"column\":").append(m.getLocationCol() == null ? "null" : m.getLocationCol().toString())
                        .append(",\"messageId\":").append(str(m.getMessageId()))
                        .append(",\"message\":").append(str(message))
                        .append('}');
            }
            anyError |= errors > 0;
            totalErrors += errors;
            if (i > 0) json.append(',');
            json.append("\n{\"file\":").append(str(f.toString()))
                    .append(",\"resourceType\":").append(str(type))
                    .append(",\"profiles\":").append(strList(new ArrayList<>(options.getProfiles())))
                    .append(",\"errors\":").append(errors)
                    .append(",\"warnings\":").append(warnings)
                    .append(",\"issues\":[").append(issues).append("]}");
        }
        long tEnd = System.nanoTime();
        json.append("\n],\"summary\":{\"files\":").append(files.size())
                .append(",\"errors\":").append(totalErrors)
                .append(",\"initSeconds\":").append(String.format(Locale.ROOT, "%.2f", (tInit - t0) / 1e9))
                .append(",\"validateSeconds\":").append(String.format(Locale.ROOT, "%.2f", (tEnd - tInit) / 1e9))
                .append("}}\n");

        if (out != null) {
            if (out.getParent() != null) Files.createDirectories(out.getParent());
            Files.writeString(out, json, StandardCharsets.UTF_8);
        } else {
            PrintStream ps = new PrintStream(System.out, true, StandardCharsets.UTF_8);
            ps.print(json);
            ps.flush();
        }
        return anyError && fail ? 1 : 0;
    }

    private static boolean isOfflinePackageArtefact(SingleValidationMessage m) {
        String msg = m.getMessage();
        return msg != null && msg.contains("Unable to resolve package id hl7.fhir.r");
    }

    private static String next(String[] args, int i, String option) throws UsageException {
        if (i >= args.length) throw new UsageException(option + " needs a value");
        return args[i];
    }

    private static List<Path> jsonFiles(Path dir) throws IOException {
        try (Stream<Path> s = Files.walk(dir)) {
            return s.filter(Files::isRegularFile)
                    .filter(p -> p.getFileName().toString().endsWith(".json"))
                    .sorted()
                    .toList();
        }
    }

    /** The top-level resourceType of a JSON text, or null when it is not a JSON object with one. */
    private static String resourceTypeOf(String text) {
        try {
            JsonObject o = org.hl7.fhir.utilities.json.parser.JsonParser.parseObject(text);
            return o.hasString("resourceType") ? o.asString("resourceType") : null;
        } catch (Exception e) {
            return null;
        }
    }

    private static String strList(List<String> items) {
        StringBuilder b = new StringBuilder("[");
        for (int i = 0; i < items.size(); i++) {
            if (i > 0) b.append(',');
            b.append(str(items.get(i)));
        }
        return b.append(']').toString();
    }

    /** A JSON string literal (or null). */
    private static String str(String s) {
        if (s == null) return "null";
        StringBuilder b = new StringBuilder(s.length() + 2).append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                default -> {
                    if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
                    else b.append(c);
                }
            }
        }
        return b.append('"').toString();
    }
}
